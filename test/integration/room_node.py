"""The simulated room with real processes: it owns the clock, the microphone and the user.

omni_node and audio_player_node (simulated speaker) run with use_sim_time; this process publishes
/clock and moves it in 40 ms steps, in lockstep with both:
  1. /clock goes to C, and the room waits until the player has played past C (`audio/speaker`);
  2. the room publishes the microphone chunk [C - 40 ms, C) on `audio/in`: the speaker's sound
     delayed, reflected and scaled (engine/simulated_room.py), plus the user's voice and noise;
  3. it waits until omni_node has taken the chunk (its /diagnostics count), and while omni_node
     thinks about an answer, until the answer's audio is all out.
The same audio therefore gives the same turns and figures however fast the processes run. Turns
are told apart by the audio stamp of their first sample (asr/final). The scenario:
without cancellation the robot hears itself; with it, it never does over ROUNDS answers, and a
user who talks over an answer stops it.

usage: room_node.py SCENARIO_JSON
  {"questions": [.npy, ...], "stop": .npy, "rounds": N, "delay_s": s, "gain": g}
  (float32 16 kHz speech)
stdout: "ready" once every peer is matched, progress lines, then one JSON line with "summary".
"""
from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass, field

import numpy as np
import rclpy
import soxr
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Bool
from std_srvs.srv import SetBool

from stream_omni_ros.engine.echo import ReferenceBuffer
from stream_omni_ros.engine.simulated_room import RoomConfig, SimulatedRoom
from stream_omni_ros.msg import AudioChunk, NodeState, ResponseText, Transcript
from stream_omni_ros.nodes.audio_conversions import audio_msg_to_pcm, pcm_to_audio_msg
from stream_omni_ros.nodes.discovery import wait_discovered
from stream_omni_ros.nodes.omni_diagnostics import DIAGNOSTIC_NAME
from stream_omni_ros.nodes.stamps import seconds_to_time_msg, time_msg_to_seconds

RATE = 16000
STEP_S = 0.04  # microphone chunks; each message costs omni_node's executor milliseconds
STEP = int(STEP_S * RATE)
T0 = 1000.0  # the simulation starts here
OMNI = "/omni_node"
ONSET = 0.05  # an utterance starts at its first sample this loud relative to its peak
VOICE_MARGIN_S = 0.3  # a turn detected this long after the user's voice ended is not theirs
QUIET_S = 0.4  # the user speaks after the room was quiet this long
MAX_ROUND_S = 12.0  # a round of self-talk ends here (simulated time)
SILENT = 1e-4  # a speaker period quieter than this (peak) is silence
HANG_S = 60.0  # only a hang waits this long (wall time) for a peer
# omni_node takes a chunk within milliseconds; one it has not taken after this long (wall
# time) was lost on the way
LOST_S = 10.0
ACKED = ("audio.accepted", "audio.ignored.not_listening")  # diagnostics counting our chunks
RELIABLE = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)


def say(line: str) -> None:
    """One line to the test."""
    print(line, flush=True)


@dataclass
class Heard:
    """What the peers said, filled by the executor thread (read under `Peers.cond`)."""

    speaker: list = field(default_factory=list)  # AudioChunk from the simulated speaker
    acked: int = 0  # microphone chunks omni_node has taken
    erle_db: str = "n/a"
    states: list = field(default_factory=list)  # NodeState, in order
    speaking: bool = False  # robot_speaking
    speaking_spans: int = 0  # robot_speaking true -> false
    out_final: set = field(default_factory=set)  # turns whose last audio/out chunk came
    responses: dict = field(default_factory=dict)  # turn -> response/final stop reason
    finals: list = field(default_factory=list)  # asr/final Transcript, in order


class Peers:
    """The room's ROS side: /clock, audio/in and the subscriptions that fill `Heard`."""

    def __init__(self, node) -> None:
        self.node = node
        self.cond = threading.Condition()
        self.heard = Heard()
        self.clock_pub = node.create_publisher(Clock, "/clock", QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE))
        self.mic_pub = node.create_publisher(AudioChunk, "audio/in", RELIABLE)
        self.listening = node.create_client(SetBool, f"{OMNI}/set_listening")
        self.parameters = node.create_client(SetParameters, f"{OMNI}/set_parameters")
        for msg_type, topic, qos, callback in (
                (AudioChunk, "audio/speaker", RELIABLE, self._on_speaker),
                (DiagnosticArray, "/diagnostics", RELIABLE, self._on_diagnostics),
                (NodeState, "state", LATCHED, self._on_state),
                (Bool, "robot_speaking", LATCHED, self._on_speaking),
                (AudioChunk, "audio/out", RELIABLE, self._on_out),
                (ResponseText, "response/final", RELIABLE, self._on_response),
                (Transcript, "asr/final", RELIABLE, self._on_final)):
            node.create_subscription(msg_type, topic, callback, qos)

    def _update(self, change) -> None:
        with self.cond:
            change(self.heard)
            self.cond.notify_all()

    def _on_speaker(self, msg: AudioChunk) -> None:
        self._update(lambda h: h.speaker.append(msg))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        status = [s for s in msg.status if s.name == DIAGNOSTIC_NAME]
        if not status:
            return
        values = {kv.key: kv.value for kv in status[0].values}

        def change(h: Heard) -> None:
            h.acked = max(h.acked, sum(int(values.get(key, 0)) for key in ACKED))
            h.erle_db = values.get("echo.erle_db", h.erle_db)
        self._update(change)

    def _on_state(self, msg: NodeState) -> None:
        self._update(lambda h: h.states.append(msg))

    def _on_speaking(self, msg: Bool) -> None:
        def change(h: Heard) -> None:
            h.speaking_spans += h.speaking and not msg.data
            h.speaking = msg.data
        self._update(change)

    def _on_out(self, msg: AudioChunk) -> None:
        if msg.is_final:
            self._update(lambda h: h.out_final.add(msg.turn_id))

    def _on_final(self, msg: Transcript) -> None:
        self._update(lambda h: h.finals.append(msg))

    def _on_response(self, msg: ResponseText) -> None:
        self._update(lambda h: h.responses.__setitem__(msg.turn_id, msg.stop_reason))

    def wait(self, predicate, limit_s: float, what: str = "") -> bool:
        """Wait (wall time) until predicate(heard) holds; False after `limit_s`, or with `what`
        an error naming it: only a hang reaches HANG_S."""
        deadline = time.monotonic() + limit_s
        with self.cond:
            while not predicate(self.heard):
                if self.cond.wait(max(0.0, deadline - time.monotonic())):
                    continue
                if not what:
                    return False
                last = self.heard.states[-1] if self.heard.states else None
                raise RuntimeError(
                    f"the room waited {limit_s} s for {what}: omni_node took "
                    f"{self.heard.acked} chunks, its state is "
                    f"{last.label if last else None} (turn {last.turn_id if last else 0}), "
                    f"audio/out ended for turns {sorted(self.heard.out_final)}")
        return True

    def call(self, client, request, what: str):
        """Call a service of omni_node and wait for the answer."""
        if not client.wait_for_service(timeout_sec=HANG_S):
            raise RuntimeError(f"no {what} service")
        future = client.call_async(request)
        future.add_done_callback(lambda _: self._update(lambda h: None))
        self.wait(lambda _: future.done(), HANG_S, what)
        return future.result()

    def set_parameters(self, **values) -> None:
        """Set omni_node parameters (runtime-safe ones change live)."""
        request = SetParameters.Request(parameters=[
            Parameter(name.replace("__", "."), value=value).to_parameter_msg()
            for name, value in values.items()])
        results = self.call(self.parameters, request, "set_parameters").results
        if not all(r.successful for r in results):
            raise RuntimeError(f"omni_node refused {values}: {[r.reason for r in results]}")


class Room:
    """The simulated time, the sound in the room and the scenario's bookkeeping."""

    def __init__(self, peers: Peers, delay_s: float, gain: float) -> None:
        self.peers = peers
        self.room = SimulatedRoom(RoomConfig(delay_s=delay_s, gain=gain))
        self.speaker = ReferenceBuffer(30 * RATE)  # the speaker's sound on the mic timeline
        self.sample = 0  # next microphone sample; the clock reads T0 + sample / RATE
        self.started = time.monotonic()
        self.sent = 0  # microphone chunks omni_node should have taken
        self.lost = 0  # chunks it never took (audio/in is best effort)
        self.loud_until = -1.0  # stamp where the speaker's last loud period ended
        self.speaker_end = 0.0  # stamp where the speaker's last period ended
        self.voices: list[np.ndarray] = []
        self.voice_at = 0
        self.utterances: list[tuple[float, float]] = []  # (onset, end) of the user's voice
        self.seen_states = self.seen_finals = 0
        self.turns: dict[int, float] = {}  # turn -> stamp of its USER_SPEAKING
        self.self_interruptions = 0
        self.user_turns = 0
        self.barge_ins: list[tuple[float, float]] = []  # (onset, detection) during playback
        self.silenced: list[float] = []  # when robot_speaking fell after each barge-in

    @property
    def now(self) -> float:
        """The simulated time (the end of the microphone audio sent)."""
        return T0 + self.sample / RATE

    def start(self) -> None:
        """The first tick: the player starts its speaker at T0."""
        self._tick(T0)

    def _tick(self, clock: float) -> None:
        self.peers.clock_pub.publish(Clock(clock=seconds_to_time_msg(clock)))
        self.peers.wait(lambda h: self._take_speaker(h, clock + 1e-6), HANG_S,
                        f"the player's tick at {clock:.2f}")

    def _take_speaker(self, heard: Heard, until: float) -> bool:
        """Place the speaker's periods on the timeline; whether they reach `until`."""
        for msg in heard.speaker:
            pcm = audio_msg_to_pcm(msg)
            mono = pcm.samples.mean(axis=1).astype(np.float32)
            if pcm.sample_rate != RATE:
                mono = soxr.resample(mono, pcm.sample_rate, RATE).astype(np.float32)
            stamp = time_msg_to_seconds(msg.header.stamp)
            self.speaker.write(mono, int(round((stamp - T0) * RATE)))
            if np.abs(mono).max(initial=0.0) > SILENT:
                self.loud_until = max(self.loud_until, stamp + pcm.duration_s)
            self.speaker_end = stamp + pcm.duration_s
        heard.speaker.clear()
        return self.speaker_end >= until

    def step(self) -> None:
        """One step of room: the clock moves, the speaker plays, the microphone hears."""
        first, stamp = self.sample, seconds_to_time_msg(self.now)
        self.sample += STEP
        self._tick(self.now)
        self.room.speak(self.speaker.read(first, STEP))
        mic, _ = self.room.step(STEP, self._voice(T0 + first / RATE))
        msg = pcm_to_audio_msg(mic, RATE, stamp=stamp, seq=first // STEP)
        self.peers.mic_pub.publish(msg)
        self.sent += 1
        if self.sent % int(10 / STEP_S) == 0:
            say(f"at {self.now - T0:.0f} s: {time.monotonic() - self.started:.0f} s of wall "
                f"time, {self.user_turns} user turns, {self.self_interruptions} "
                "self-interruptions")
        if not self.peers.wait(lambda h: h.acked >= self.sent, LOST_S):
            self.sent -= 1  # best effort: a chunk omni_node never received is not waited for
            self.lost += 1
        self.peers.wait(lambda h: not self._thinking(h), HANG_S,
                        "omni_node to finish its answer")
        with self.peers.cond:
            self._follow_states(self.peers.heard)
            if len(self.silenced) < len(self.barge_ins) and not self.peers.heard.speaking:
                self.silenced.append(self.now)

    def _thinking(self, heard: Heard) -> bool:
        """omni_node is generating an answer whose audio is not all out yet."""
        state = heard.states[-1] if heard.states else None
        return (state is not None and state.state == NodeState.THINKING
                and state.turn_id not in heard.out_final and state.turn_id not in heard.responses)

    def _follow_states(self, heard: Heard) -> None:
        """Whose utterance each turn was (by the audio stamp of its first sample: the user's, or
        the robot's own voice), and when omni_node began the ones that talked over an answer."""
        for final in heard.finals[self.seen_finals:]:
            start = time_msg_to_seconds(final.audio_start)
            if any(onset - VOICE_MARGIN_S <= start <= end for onset, end in self.utterances):
                self.user_turns += 1
            else:
                self.self_interruptions += 1
                say(f"self-interruption: turn {final.turn_id}, heard from {start - T0:.2f} s")
        self.seen_finals = len(heard.finals)
        for state in heard.states[self.seen_states:]:
            if state.state != NodeState.USER_SPEAKING or state.turn_id in self.turns:
                continue
            stamp = time_msg_to_seconds(state.header.stamp)
            self.turns[state.turn_id] = stamp
            users = [onset for onset, end in self.utterances
                     if onset <= stamp <= end + VOICE_MARGIN_S]
            if users and self.loud_until >= stamp - STEP_S:  # over the robot's answer
                self.barge_ins.append((users[-1], stamp))
        self.seen_states = len(heard.states)

    def _voice(self, start: float) -> np.ndarray | None:
        """The user's voice for the step that starts at `start`."""
        if not self.voices:
            return None
        voice = self.voices[0]
        if self.voice_at == 0:
            onset = int(np.argmax(np.abs(voice) >= ONSET * np.abs(voice).max()))
            self.utterances.append((start + onset / RATE, start + len(voice) / RATE))
        piece = voice[self.voice_at:self.voice_at + STEP]
        self.voice_at += STEP
        if self.voice_at >= len(voice):
            self.voices.pop(0)
            self.voice_at = 0
        return piece

    def say(self, voice: np.ndarray) -> None:
        """The user speaks now, over whatever plays."""
        self.voices.append(voice)
        while self.voices:
            self.step()

    def quiet(self) -> bool:
        """Nobody speaks, nothing plays, and omni_node listens."""
        with self.peers.cond:
            heard = self.peers.heard
            state = heard.states[-1].state if heard.states else None
            return (not self.voices and not heard.speaking and state == NodeState.LISTENING
                    and self.loud_until <= self.now - QUIET_S)

    def wait_quiet(self, limit_s: float = MAX_ROUND_S, until=lambda: False) -> None:
        """Let the room run until it is quiet, `until()` holds or `limit_s` (simulated) passed."""
        end = self.now + limit_s
        while not self.quiet() and self.now < end and not until():
            self.step()

    def run_for(self, seconds: float) -> None:
        """Let `seconds` of simulated time pass."""
        end = self.now + seconds
        while self.now < end - 1e-9:
            self.step()

    def spans(self) -> int:
        """Answers the player played to their end so far (robot_speaking true -> false)."""
        with self.peers.cond:
            return self.peers.heard.speaking_spans


def scenario(room: Room, peers: Peers, questions: list, stop: np.ndarray, rounds: int) -> dict:
    """Off: ask until the robot interrupts itself. On: rounds answers, then a barge-in."""
    summary = {}
    peers.set_parameters(echo__cancel=False, echo__without_reference="barge_in")
    for index in range(2 * len(questions)):
        room.say(questions[index % len(questions)])
        room.wait_quiet(until=lambda: room.self_interruptions > 0)
        if room.self_interruptions:
            break  # it talks to itself from here on
    summary["off"] = {"self_interruptions": room.self_interruptions,
                      "user_turns": room.user_turns, "at_s": room.now - T0}
    say(f"cancellation off: {summary['off']}")
    peers.call(peers.listening, SetBool.Request(data=False), "set_listening")
    room.wait_quiet()
    peers.set_parameters(echo__cancel=True, echo__without_reference="no_barge_in")
    peers.call(peers.listening, SetBool.Request(data=True), "set_listening")
    room.run_for(QUIET_S)
    room.self_interruptions = room.user_turns = 0
    room.barge_ins.clear()
    room.silenced.clear()
    spans = room.spans()
    for index in range(rounds):
        room.say(questions[index % len(questions)])
        room.wait_quiet()
    with peers.cond:
        erle = peers.heard.erle_db
    summary["on"] = {"self_interruptions": room.self_interruptions,
                     "user_turns": room.user_turns, "answers": room.spans() - spans,
                     "erle_db": erle, "at_s": room.now - T0}
    say(f"cancellation on: {summary['on']}")
    summary["barge_in"] = barge_in(room, questions[1], stop)
    summary["self_interruptions_at_end"] = room.self_interruptions
    summary["lost_chunks"] = room.lost
    return summary


def barge_in(room: Room, question: np.ndarray, stop: np.ndarray) -> dict:
    """Ask, let the answer play 0.5 s, talk over it; when was it detected and silenced."""
    room.say(question)
    while room.loud_until < room.now - STEP_S:  # endpoint, then the answer starts playing
        room.step()
        if room.now - T0 > 1e4:
            raise RuntimeError("no answer played")
    room.run_for(0.5)
    playing_before = room.loud_until >= room.now - STEP_S
    before = len(room.barge_ins)
    room.say(stop)
    onset = room.utterances[-1][0]
    room.wait_quiet()
    return {"playing": playing_before, "onset_s": round(onset - T0, 3),
            "detected_ms": [round((d - onset) * 1000) for _, d in room.barge_ins[before:]],
            "silent_ms": [round((s - onset) * 1000) for s in room.silenced[before:]]}


def main() -> None:
    """Run the scenario; print the summary."""
    config = json.loads(sys.argv[1])
    questions = [np.load(path).astype(np.float32) for path in config["questions"]]
    stop = np.load(config["stop"]).astype(np.float32)
    rclpy.init()
    node = rclpy.create_node("room")
    peers = Peers(node)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    try:
        for server in (OMNI, "/audio_player"):
            if not wait_discovered(node, server, HANG_S):
                raise RuntimeError(f"{server} did not discover the room")
        peers.wait(lambda h: h.states and h.states[-1].state == NodeState.LISTENING, HANG_S,
                   "omni_node to listen")
        room = Room(peers, config["delay_s"], config["gain"])
        room.start()
        say("ready")
        summary = scenario(room, peers, questions, stop, config["rounds"])
        say(json.dumps({"summary": summary}))
    finally:
        executor.shutdown()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
