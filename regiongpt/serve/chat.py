"""The terminal chat behind ``regiongpt chat IMAGE``: a loop over one ``RegionGPT.session``.

Regions added with ``--box`` or ``/box`` wait until a question first names them: a question
that mentions ``<region3>`` hands every waiting region up to region 3 to the session, so the
numbering on screen and in the model's history always agree."""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

from regiongpt.api import RegionGPT
from regiongpt.processing import TAG_PATTERN
from regiongpt.regions import Box, Region, region_to_json, validate_regions

HELP = (
    "Ask about regions with <region1>, <region2>... Commands: /box X1,Y1,X2,Y2 (add a region), "
    "/regions (list them), /reset (forget history and regions), /quit"
)


def parse_box(text: str) -> Box:
    """``"X1,Y1,X2,Y2"`` (pixels) as a Box; ValueError with the expected form otherwise."""
    parts = [p for p in text.replace(" ", ",").split(",") if p]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 4:
        raise ValueError(f"expected a box as X1,Y1,X2,Y2 in pixels (for example 10,20,120,200), got {text!r}")
    return Box(*values)


def _describe(region: Region) -> str:
    info = region_to_json(region)
    return f"{info['type']} {[round(v, 1) for v in info.get('box', info.get('point', []))]}"


class TerminalChat:
    """State and commands of one terminal chat; :meth:`handle` answers one input line."""

    def __init__(
        self, engine: RegionGPT, image, boxes: tuple[Box, ...] = (), max_new_tokens: int = 128
    ) -> None:
        self.session = engine.session(image)
        self.max_new_tokens = max_new_tokens
        self.pending: list[Region] = []
        self.lines: list[str] = []
        for box in boxes:
            self.add_region(box)

    @property
    def size(self) -> tuple[int, int]:
        return self.session.image.size

    def add_region(self, box: Box) -> str:
        (region,) = validate_regions([box], self.size)
        self.pending.append(region)
        return f"<region{len(self.session.regions) + len(self.pending)}> = {_describe(region)}"

    def list_regions(self) -> list[str]:
        used = [f"<region{k}> = {_describe(r)}" for k, r in enumerate(self.session.regions, start=1)]
        start = len(used) + 1
        waiting = [
            f"<region{k}> = {_describe(r)} (not asked about yet)" for k, r in enumerate(self.pending, start)
        ]
        return used + waiting or ["no regions yet: add one with /box X1,Y1,X2,Y2"]

    def ask(self, question: str) -> str:
        mentioned = max((int(m) for m in TAG_PATTERN.findall(question)), default=0)
        take = min(max(mentioned - len(self.session.regions), 0), len(self.pending))
        answer = self.session.ask(question, regions=self.pending[:take], max_new_tokens=self.max_new_tokens)
        self.pending = self.pending[take:]
        return answer

    def handle(self, line: str) -> Optional[list[str]]:
        """Lines to print for one input line; ``None`` ends the chat. ValueErrors become ``error:`` lines."""
        line = line.strip()
        command, _, argument = line.partition(" ")
        try:
            if not line:
                return []
            if command in ("/quit", "/exit", "/q"):
                return None
            if command == "/box":
                return [f"added {self.add_region(parse_box(argument))}"]
            if command == "/regions":
                return self.list_regions()
            if command == "/reset":
                self.session.reset()
                self.pending = []
                return ["history and regions cleared (the image stays loaded)"]
            if command in ("/help", "/?"):
                return [HELP]
            if command.startswith("/"):
                return [f"error: unknown command {command!r}. {HELP}"]
            return [f"assistant> {self.ask(line)}"]
        except ValueError as error:
            return [f"error: {error}"]


def run_chat(chat: TerminalChat, read_line: Callable[[], str], write: Callable[[str], None]) -> None:
    """Read lines until ``/quit`` or end of input (``read_line`` returns ``""``)."""
    write(HELP)
    for line in chat.list_regions() if chat.pending else []:
        write(line)
    while True:
        line = read_line()
        if not line:
            return
        out = chat.handle(line)
        if out is None:
            return
        for text in out:
            write(text)
