"""Progress: plain log lines when not on a terminal, a tqdm bar on one, silence off rank 0."""

from __future__ import annotations

import io

from fmcore.training.progress import Progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_without_a_terminal():
    out = io.StringIO()
    p = Progress(100, stream=out, every_s=3600.0, label="train d/m")
    p.update(10, 0.5, 1000.0, 1e-3)  # too soon after the start: no line
    p.update(100, 0.25, 2000.0, 1e-8)  # the last step always prints
    p.close()
    assert out.getvalue() == "train d/m step 100/100 loss 0.25000 lr 1.000e-08 samples/s 2000\n"


def test_bar_on_a_terminal_and_silence_off_rank_0():
    tty = FakeTTY()
    p = Progress(50, initial=10, stream=tty)
    p.update(20, 0.125, 300.0, 1e-3)
    p.close()
    assert p.bar is not None and p.bar.n == 20 and "loss=0.1250" in tty.getvalue()
    quiet = io.StringIO()
    q = Progress(50, enabled=False, stream=quiet)
    q.update(50, 1.0, 1.0, 1.0)
    q.write("hello")
    assert quiet.getvalue() == ""
