"""``regiongpt chat`` through typer's CliRunner with a tiny model fed on stdin; the command
functions mounted the way the main CLI mounts them."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from regiongpt.regions import Box
from regiongpt.serve import commands
from tests.serve.util import make_image


@pytest.fixture()
def cli(tiny_engine, monkeypatch):
    app = typer.Typer()
    app.command("serve")(commands.serve_command)
    app.command("ui")(commands.ui_command)
    app.command("chat")(commands.chat_command)
    loads = []

    def fake_load(model, device="cpu", dtype="auto"):
        loads.append(model)
        return tiny_engine

    monkeypatch.setattr(commands, "load_engine", fake_load)
    return app, loads


@pytest.fixture()
def image_path(tmp_path):
    path = tmp_path / "scene.png"
    make_image(80, 60).save(path)
    return path


def run(cli, args, stdin=""):
    if args[0] == "chat" and "--help" not in args:
        args = [*args, "--max-new-tokens", "6"]
    return CliRunner().invoke(cli[0], args, input=stdin)


def reference(engine, path, turns):
    session = engine.session(path)
    return [session.ask(q, regions=r, max_new_tokens=6) for q, r in turns]


def test_multi_round_chat_with_boxes_and_commands(cli, tiny_engine, image_path):
    script = (
        "\n".join(
            [
                "What is <region1>?",
                "/box 30,10,70,55",
                "/regions",
                "Is <region2> near <region1>?",
                "/quit",
                "never read",
            ]
        )
        + "\n"
    )
    result = run(cli, ["chat", str(image_path), "--box", "5,6,50,40", "--model", "tiny"], script)
    assert result.exit_code == 0, result.output
    assert cli[1] == ["tiny"]
    expected = reference(
        tiny_engine,
        image_path,
        [
            ("What is <region1>?", [Box(5, 6, 50, 40)]),
            ("Is <region2> near <region1>?", [Box(30, 10, 70, 55)]),
        ],
    )
    lines = result.output.splitlines()
    assert lines[1] == "<region1> = box [5.0, 6.0, 50.0, 40.0] (not asked about yet)"
    assert f"assistant> {expected[0]}" in lines
    assert "added <region2> = box [30.0, 10.0, 70.0, 55.0]" in lines
    assert "<region1> = box [5.0, 6.0, 50.0, 40.0]" in lines  # /regions after the first question
    assert "<region2> = box [30.0, 10.0, 70.0, 55.0] (not asked about yet)" in lines
    assert lines[-1] == f"assistant> {expected[1]}"  # history kept: the second answer matches the session


def test_reset_forgets_regions_and_history(cli, tiny_engine, image_path):
    script = "What is <region1>?\n/reset\n/regions\n/box 1,1,20,20\nWhat is <region1>?\n"
    result = run(cli, ["chat", str(image_path), "--box", "5,6,50,40"], script)
    assert result.exit_code == 0, result.output
    assert "history and regions cleared (the image stays loaded)" in result.output
    assert "no regions yet: add one with /box X1,Y1,X2,Y2" in result.output
    assert "added <region1> = box [1.0, 1.0, 20.0, 20.0]" in result.output
    fresh = reference(tiny_engine, image_path, [("What is <region1>?", [Box(1, 1, 20, 20)])])[0]
    assert result.output.splitlines()[-1] == f"assistant> {fresh}"


def test_mistakes_in_the_chat_are_reported_and_the_chat_goes_on(cli, image_path):
    script = (
        "What is <region3>?\n/box 1,2,3\n/box 50,50,10,10\n/frobnicate\n/box 1,1,20,20\nWhat is <region1>?\n"
    )
    result = run(cli, ["chat", str(image_path)], script)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "error: tag <region3> refers to a region that was not given (0 region(s) given)" in out
    assert "error: expected a box as X1,Y1,X2,Y2 in pixels" in out
    assert "error: box [50.0, 50.0, 10.0, 10.0] is empty or inverted" in out
    assert "error: unknown command '/frobnicate'" in out
    assert out.splitlines()[-1].startswith("assistant> ")


def test_user_errors_exit_2_with_one_line(cli, image_path, tmp_path):
    cases = [
        (["chat", str(tmp_path / "missing.png")], "error: image file not found"),
        (["chat", str(image_path), "--box", "1,2,3"], "error: expected a box as X1,Y1,X2,Y2"),
        (["chat", str(image_path), "--box", "500,500,600,600"], "lies entirely outside the 80x60 image"),
    ]
    for args, message in cases:
        result = run(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert message in result.output and result.output.count("error:") == 1


def test_missing_model_exits_2(image_path, monkeypatch):
    app = typer.Typer()
    app.command("chat")(commands.chat_command)
    app.command("serve")(commands.serve_command)
    result = CliRunner().invoke(app, ["chat", str(image_path), "--model", "/no/such/model"])
    assert result.exit_code == 2 and "error: no model at /no/such/model" in result.output
    result = CliRunner().invoke(app, ["serve", "--model", "/no/such/model", "--port", "0"])
    assert result.exit_code == 2 and "error: no model at /no/such/model" in result.output


def test_busy_port_exits_2(cli):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        for command in ("serve", "ui"):
            result = run(cli, [command, "--port", str(port)])
            assert result.exit_code == 2, result.output
            assert f"error: cannot listen on 127.0.0.1:{port}" in result.output


def test_help_teaches_by_example(cli):
    for command, example in (
        ("serve", "regiongpt serve --model"),
        ("ui", "regiongpt ui"),
        ("chat", "regiongpt chat cat.jpg --box 10,20,120,200"),
    ):
        result = run(cli, [command, "--help"])
        assert result.exit_code == 0 and example in result.output, result.output
