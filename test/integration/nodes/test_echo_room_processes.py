"""The simulated room with real processes: omni_node, audio_player_node and the room node.

omni_node (`responder:=parrot`: it answers with the speech it heard, a real voice) and the
player (simulated speaker) run on sim time; the room (test/integration/room_node.py) owns
/clock and moves it in lockstep with both, so the counts below are the same on a loaded
machine. One run shows both sides: with echo.cancel false the robot interrupts itself, with it
true (set live) it never does over ROUNDS answers, and a user who talks over an answer still
stops it within 300 ms.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream_omni_ros.nodes.executables import start_node, stop_node

pytest.importorskip("livekit.rtc", reason="echo cancellation needs the livekit wheel")

ROOM = Path(__file__).parents[1] / "room_node.py"
DELAY_S, GAIN = 0.08, 0.1  # the room of the in-process test (engine/simulated_room.py)
ROUNDS = 11  # answers with cancellation on; the first lets the canceller converge
BARGE_IN_BOUND_S = 0.3
QUESTIONS = ("Where is the kitchen?", "Please bring me a glass of water.",
             "What is the weather like today?")
ROOM_LIMIT_S = 900.0  # only a hang waits this long


def run_room(config: dict, log: Path) -> tuple[dict, str]:
    """Run the room's scenario to its end; (summary, everything it printed)."""
    with open(log, "w", encoding="utf-8") as err:
        done = subprocess.run([sys.executable, str(ROOM), json.dumps(config)], text=True,
                              stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                              timeout=ROOM_LIMIT_S)
    printed = done.stdout + log.read_text(encoding="utf-8")
    lines = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert done.returncode == 0 and lines and "summary" in lines[-1], printed
    return lines[-1]["summary"], printed


def test_room_echo_interrupts_without_cancellation_and_never_with_it(speak, tmp_path):
    paths = []
    for index, text in enumerate(QUESTIONS):
        paths.append(tmp_path / f"q{index}.npy")
        np.save(paths[-1], speak(text, 0.1, 0.1, name=f"q{index}"))
    np.save(tmp_path / "stop.npy", speak("Hey, wait a moment.", name="stop"))
    logs = {name: open(tmp_path / f"{name}.log", "w", encoding="utf-8")
            for name in ("omni", "player")}
    sim = {"use_sim_time": True}
    # /diagnostics carry omni_node's count of microphone chunks taken: the room's lockstep
    omni = start_node("omni_node", {**sim, "responder": "parrot", "diagnostics_period_s": 0.05},
                      stdout=logs["omni"], stderr=subprocess.STDOUT)
    player = start_node("audio_player_node", {**sim, "simulated_speaker": True,
                                              "jitter_buffer_s": 0.05},
                        stdout=logs["player"], stderr=subprocess.STDOUT)
    try:
        summary, printed = run_room({
            "questions": [str(p) for p in paths], "stop": str(tmp_path / "stop.npy"),
            "rounds": ROUNDS, "delay_s": DELAY_S, "gain": GAIN}, tmp_path / "room.log")
    finally:
        status = {"omni": stop_node(omni), "player": stop_node(player)}
        for log in logs.values():
            log.close()
    print(printed)
    off, on, barge_in = summary["off"], summary["on"], summary["barge_in"]
    print(f"room with processes ({summary['lost_chunks']} microphone chunks lost): "
          f"cancellation off: {off['self_interruptions']} "
          f"self-interruptions in {off['user_turns']} user turns; on: "
          f"{on['self_interruptions']} over {on['answers']} answers, ERLE {on['erle_db']} dB; "
          f"barge-in during playback detected {barge_in['detected_ms']} ms after the voice "
          f"began, player silent {barge_in['silent_ms']} ms after it")
    assert status == {"omni": 0, "player": 0}
    assert off["self_interruptions"] > 0
    assert on["self_interruptions"] == 0 and summary["self_interruptions_at_end"] == 0
    assert on["answers"] >= ROUNDS - 1
    assert float(on["erle_db"]) >= 20.0
    assert barge_in["playing"]
    assert len(barge_in["detected_ms"]) == 1
    assert barge_in["detected_ms"][0] <= BARGE_IN_BOUND_S * 1000
    assert barge_in["silent_ms"] and barge_in["silent_ms"][0] <= BARGE_IN_BOUND_S * 1000 + 100
