"""The task enum and the task-guided instructions (RegionGPT section 3.2).

One function, :func:`build_question`, turns a task and a region tag into the question text; the
data generators, the trainer, the API, the CLI, the server and the evaluation all use it, so
training and inference see identical instructions."""

from __future__ import annotations

from enum import Enum


class Task(str, Enum):
    CATEGORY = "category"
    BRIEF = "brief"
    DETAILED = "detailed"
    RELATION = "relation"
    YES_NO = "yes_no"
    CHOOSE_REGION = "choose_region"
    MULTIPLE_CHOICE = "multiple_choice"

    @classmethod
    def parse(cls, value: str | Task) -> Task:
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(t.value for t in cls)
            raise ValueError(f"unknown task {value!r}; choose one of: {names}") from None


#: Appended to the question of each task to fix the output scope.
TASK_INSTRUCTIONS: dict[Task, str] = {
    Task.CATEGORY: "Answer the question using a single word or phrase.",
    Task.BRIEF: "Answer with a short phrase.",
    Task.DETAILED: "Describe it in detail.",
    Task.RELATION: "Answer the question using a single word or phrase.",
    Task.YES_NO: "Answer yes or no.",
    Task.CHOOSE_REGION: "Answer with the region, for example region 1.",
    Task.MULTIPLE_CHOICE: "Answer with the option's letter from the given choices directly.",
}

#: The default question for tasks about one region (``{region}`` is a ``<regionK>`` tag).
REGION_QUESTIONS: dict[Task, str] = {
    Task.CATEGORY: "What is the category of {region}?",
    Task.BRIEF: "Give a brief description of {region}.",
    Task.DETAILED: "What can you tell me about {region}?",
}


def with_instruction(question: str, task: Task | str) -> str:
    """``question`` followed by the task's instruction."""
    return f"{question.strip()} {TASK_INSTRUCTIONS[Task.parse(task)]}"


def build_question(task: Task | str, region_index: int = 1) -> str:
    """The standard single-region question for ``task`` about ``<region{region_index}>``."""
    task = Task.parse(task)
    if task not in REGION_QUESTIONS:
        single = ", ".join(t.value for t in REGION_QUESTIONS)
        raise ValueError(f"task {task.value!r} needs a question of its own; single-region tasks: {single}")
    return with_instruction(REGION_QUESTIONS[task].format(region=f"<region{region_index}>"), task)
