"""The freshness, fairness, batching and cancellation rules of camcap.engine.scheduler.

Every wait is bounded: a broken scheduler fails these tests, it never hangs them. The gated fake
lets a test decide exactly when the model is busy, so the rules are checked without timing.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from PIL import Image

from camcap.config import Settings
from camcap.engine import batching
from camcap.engine import scheduler as scheduler_module
from camcap.engine.change import difference, signature
from camcap.engine.events import Frame, FrameCaption, FrameError, FrameUnchanged, StreamEvent, TokenDelta
from camcap.engine.options import StreamOptions
from camcap.engine.scheduler import Scheduler, Stream
from camcap.errors import CamcapError, UnsupportedTaskError
from camcap.models.base import Caption, Task
from camcap.server.messages import ErrorCode
from tests.fakes import FakeCaptioner
from tests.test_gating import BASE, Scene, render, shoot

RED, GREEN, BLUE, YELLOW, GREY = (200, 0, 0), (0, 200, 0), (0, 0, 200), (200, 200, 0), (90, 90, 90)
WAIT = 10.0  # seconds; only ever reached when something is broken


def run(coro_fn: Callable[[], object]) -> object:
    async def bounded():
        return await asyncio.wait_for(coro_fn(), WAIT * 2)  # type: ignore[arg-type]

    return asyncio.run(bounded())


def frame(seq: int, colour: tuple[int, int, int] = GREY, task: Task | None = None, **kwargs) -> Frame:
    return Frame(seq=seq, image=Image.new("RGB", (32, 24), colour), task=task or Task.caption(), **kwargs)


async def until(predicate: Callable[[], bool], what: str = "condition") -> None:
    for _ in range(int(WAIT / 0.005)):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"timed out waiting for: {what}")


async def next_event(stream: Stream) -> StreamEvent:
    return await asyncio.wait_for(stream.next_event(), WAIT)


async def past_tokens(stream: Stream) -> StreamEvent:
    """The stream's next event that is not a token."""
    event = await next_event(stream)
    while isinstance(event, TokenDelta):
        event = await next_event(stream)
    return event


async def next_caption(stream: Stream) -> tuple[FrameCaption, list[TokenDelta]]:
    tokens: list[TokenDelta] = []
    while True:
        event = await next_event(stream)
        if isinstance(event, FrameCaption):
            return event, tokens
        if isinstance(event, FrameError):
            raise AssertionError(f"unexpected error event: {event}")
        tokens.append(event)


def words_of(colour: tuple[int, int, int]) -> str:
    return "colour {} {} {}".format(*colour)


@contextmanager
def scheduler_for(fake: FakeCaptioner, **kwargs) -> Iterator[Scheduler]:
    scheduler = Scheduler(fake, **kwargs)
    scheduler.start()
    try:
        yield scheduler
    finally:
        scheduler.close()
        assert not scheduler.running


def test_tokens_stream_then_the_caption_with_its_timings():
    fake = FakeCaptioner()

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(41, RED, captured_at=1234.5, receive_ms=3.0, image_decode_ms=1.5))
            caption, tokens = await next_caption(stream)
            assert [t.seq for t in tokens] == [41] * 4
            assert "".join(t.text for t in tokens) == caption.caption.text == words_of(RED)
            assert (caption.seq, caption.captured_at, caption.skipped, caption.unchanged) == (41, 1234.5, 0, 0)
            assert (caption.stream, caption.source) == (stream.id, None)
            t = caption.timings
            assert (t.receive_ms, t.image_decode_ms, t.tokens) == (3.0, 1.5, 4)
            assert min(t.queue_ms, t.first_token_ms, t.decode_ms, t.inference_ms) >= 0
            assert t.total_ms >= t.inference_ms

    run(main)


class EncodeTimingCaptioner(FakeCaptioner):
    """A backend that times its vision encoder apart, as Moondream does."""

    def generate(self, requests):
        for event in super().generate(requests):
            if isinstance(event, Caption):
                event = dataclasses.replace(
                    event, timings=dataclasses.replace(event.timings, preprocess_ms=2.5, encode_ms=7.25)
                )
            yield event


def test_every_stage_time_the_backend_reports_reaches_the_caption():
    async def main():
        with scheduler_for(EncodeTimingCaptioner()) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(0, RED))
            t = (await next_caption(stream))[0].timings
            assert (t.preprocess_ms, t.encode_ms) == (2.5, 7.25)

    run(main)


def test_a_server_sources_captions_carry_its_name_and_stream():
    """`serve --source` captions say which camera they describe (the page's grid, MQTT, alerts)."""

    async def main():
        with scheduler_for(FakeCaptioner()) as scheduler:
            door, yard = scheduler.open_stream(source="door"), scheduler.open_stream(source="yard")
            door.submit(frame(0, RED))
            yard.submit(frame(0, BLUE))
            for stream, name in ((door, "door"), (yard, "yard")):
                caption = (await next_caption(stream))[0]
                assert (caption.stream, caption.source) == (stream.id, name)
            assert door.id != yard.id

    run(main)


def test_a_captions_timings_split_its_time_between_waiting_and_the_model():
    """Frame 1 waits while frame 0 of another stream is captioned (each word takes 10 ms): its
    queue time ends when the model takes it, so queue and inference fit in its total."""
    fake = FakeCaptioner(gated=True, token_delay=0.01)

    async def main():
        with scheduler_for(fake) as scheduler:
            a, b = scheduler.open_stream(), scheduler.open_stream()
            a.submit(frame(0, RED))
            await until(lambda: fake.started == 1, "frame 0 to start")
            b.submit(frame(1, BLUE))
            fake.allow(2)
            await next_caption(a)
            t = (await next_caption(b))[0].timings
            assert t.inference_ms >= 40  # four words of at least 10 ms each
            assert t.queue_ms > 0 and t.queue_ms + t.inference_ms <= t.total_ms

    run(main)


def test_closing_a_stream_twice_is_harmless():
    async def main():
        with scheduler_for(FakeCaptioner()) as scheduler:
            stream = scheduler.open_stream()
            stream.close()
            stream.close()
            assert stream.closed and scheduler.stream_count == 0

    run(main)


class Recorder:
    """A SchedulerObserver that remembers what it was told; `fail` makes it raise every time."""

    def __init__(self, fail: bool = False) -> None:
        self.events: list[StreamEvent] = []
        self.batches: list[int] = []
        self.seconds: list[float] = []
        self.fail = fail

    def observe_event(self, event: StreamEvent) -> None:
        self.events.append(event)
        if self.fail:
            raise RuntimeError("a bug in the metrics")

    def observe_batch(self, size: int, seconds: float) -> None:
        assert seconds >= 0
        self.batches.append(size)
        self.seconds.append(seconds)
        if self.fail:
            raise RuntimeError("a bug in the metrics")


def test_the_observer_is_told_every_delivered_event_and_every_batch():
    recorder = Recorder()
    fake = FakeCaptioner(max_batch=2)

    async def main():
        with scheduler_for(fake, observer=recorder, batch_window_ms=30_000) as scheduler:
            a, b = scheduler.open_stream(), scheduler.open_stream()
            began = time.perf_counter()
            a.submit(frame(0, RED))
            b.submit(frame(0, BLUE))
            first, _ = await next_caption(a)
            second, _ = await next_caption(b)
            # The batch is reported after its captions are delivered: wait for the report.
            await until(lambda: recorder.batches != [], "the batch to be reported")
            assert recorder.batches == [2]
            # The batch's seconds run from the model's start to its end: within what the test saw,
            # and at least the model time the captions report.
            model_ms = max(first.timings.inference_ms, second.timings.inference_ms)
            assert model_ms <= recorder.seconds[0] * 1000 <= (time.perf_counter() - began) * 1000
            assert [e for e in recorder.events if isinstance(e, FrameCaption)] == [first, second]
            assert sum(isinstance(e, TokenDelta) for e in recorder.events) == 8

    run(main)


def test_a_failing_observer_never_costs_a_caption(caplog):
    fake = FakeCaptioner()

    async def main():
        with scheduler_for(fake, observer=Recorder(fail=True)) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(0, RED))
            caption, tokens = await next_caption(stream)
            assert caption.caption.text == words_of(RED) and len(tokens) == 4

    run(main)
    assert "The scheduler's observer failed" in caplog.text


def test_a_newer_frame_replaces_the_waiting_one_and_nothing_queues():
    fake = FakeCaptioner(gated=True)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(0, RED))
            await until(lambda: fake.started == 1, "the model to start frame 0")
            # The model is busy with frame 0: each of these replaces the one before it.
            stream.submit(frame(1, GREEN))
            stream.submit(frame(2, BLUE))
            stream.submit(frame(3, YELLOW))
            fake.allow(3)
            first, _ = await next_caption(stream)
            second, _ = await next_caption(stream)
            assert (first.seq, first.skipped) == (0, 0)
            assert (second.seq, second.skipped) == (3, 2)
            assert second.caption.text == words_of(YELLOW)
            # A marker frame: the worker takes frames in order, so if green or blue had been
            # queued, the model would see them before this one (the gate has a ticket left).
            stream.submit(frame(4, RED))
            marker, _ = await next_caption(stream)
            assert marker.seq == 4
            assert fake.seen == [RED, YELLOW, RED]
            assert stream.events.empty()
            assert stream.skipped_total == 2

    run(main)


def test_frames_sent_faster_than_the_model_captions_only_the_newest():
    fake = FakeCaptioner(token_delay=0.01)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            for seq in range(30):
                stream.submit(frame(seq, (seq, seq, seq)))
                await asyncio.sleep(0)
            captions = []
            while not captions or captions[-1].seq != 29:
                captions.append((await next_caption(stream))[0])
            seqs = [c.seq for c in captions]
            assert seqs == sorted(set(seqs)), "captions come in order, each frame at most once"
            assert len(captions) < 30
            # Every frame was either captioned or counted as skipped: none is lost, none waits.
            assert len(captions) + sum(c.skipped for c in captions) == 30 == len(captions) + stream.skipped_total

    run(main)


def test_two_streams_with_waiting_frames_take_turns():
    fake = FakeCaptioner(gated=True)

    async def main():
        with scheduler_for(fake) as scheduler:
            a, b = scheduler.open_stream(), scheduler.open_stream()
            a.submit(frame(0, RED))
            await until(lambda: fake.started == 1, "a's first frame to start")
            a.submit(frame(1, GREEN))  # waits first...
            b.submit(frame(0, BLUE))  # ...but b has not been served yet: b goes next
            fake.allow()
            await until(lambda: fake.started == 2, "the second generation")
            assert fake.seen[1] == BLUE
            a.submit(frame(2, YELLOW))  # replaces a's green frame while b's is captioned
            fake.allow()
            await until(lambda: fake.started == 3, "the third generation")
            assert fake.seen == [RED, BLUE, YELLOW]
            fake.allow()
            a_first, a_second, b_first = (
                (await next_caption(a))[0],
                (await next_caption(a))[0],
                (await next_caption(b))[0],
            )
            assert (a_first.seq, a_second.seq, a_second.skipped, b_first.seq) == (0, 2, 1, 0)

    run(main)


def test_a_flooding_stream_does_not_starve_live_streams():
    fake = FakeCaptioner(token_delay=0.002)

    async def main():
        with scheduler_for(fake) as scheduler:
            flood = scheduler.open_stream()
            stop = asyncio.Event()

            async def flooder():
                seq = 0
                while not stop.is_set():
                    flood.submit(frame(seq, RED))
                    seq += 1
                    await asyncio.sleep(0.001)

            async def live(colour):
                stream = scheduler.open_stream()
                for seq in range(5):  # "live" pacing: the next frame when the caption is done
                    stream.submit(frame(seq, colour))
                    caption, _ = await next_caption(stream)
                    assert (caption.seq, caption.caption.text) == (seq, words_of(colour))

            flooding = asyncio.create_task(flooder())
            await asyncio.gather(live(GREEN), live(BLUE))
            stop.set()
            await flooding

    run(main)


def test_closing_a_stream_mid_caption_cancels_the_generation_and_frees_the_frame():
    fake = FakeCaptioner(token_delay=0.005, words=2000)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            image = Image.new("RGB", (32, 24), RED)
            image_ref = weakref.ref(image)
            stream.submit(Frame(seq=0, image=image, task=Task.caption()))
            del image
            assert isinstance(await next_event(stream), TokenDelta)
            stream.close()
            await until(lambda: fake.closed_early == 1, "the generation to be closed")
            assert scheduler.stream_count == 0
            await until(lambda: gc.collect() >= 0 and image_ref() is None, "the frame to be freed")
            await asyncio.sleep(0.02)
            events = []
            while not stream.events.empty():
                events.append(stream.events.get_nowait())
            assert not any(isinstance(e, FrameCaption) for e in events)
            assert len(events) < 2000

    run(main)


def test_a_batch_abandoned_by_its_only_stream_is_still_reported_to_the_observer():
    """Metrics count the model's time even when nobody waited for the caption."""
    recorder = Recorder()
    fake = FakeCaptioner(token_delay=0.005, words=2000)

    async def main():
        with scheduler_for(fake, observer=recorder) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(0, RED))
            assert isinstance(await next_event(stream), TokenDelta)
            stream.close()
            await until(lambda: recorder.batches == [1], "the abandoned batch to be reported")
            assert fake.closed_early == 1

    run(main)


class CaptionlessCaptioner(FakeCaptioner):
    """A buggy backend: it streams every item's tokens but never yields a Caption for item 0."""

    def generate(self, requests):
        events = super().generate(requests)
        return (e for e in events if not (isinstance(e, Caption) and e.index == 0))


def test_a_frame_the_backend_ended_without_captioning_gets_an_error_and_is_not_a_reference():
    fake = CaptionlessCaptioner()

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(shot(0))
            event = await past_tokens(stream)
            assert isinstance(event, FrameError) and (event.seq, event.code) == (0, ErrorCode.MODEL_ERROR)
            assert event.message == (
                "The fake backend ended without a caption for this frame; this is a bug in the backend."
            )
            # No caption describes frame 0, so the same scene again goes to the model, not `unchanged`.
            stream.submit(shot(1))
            event = await next_event(stream)
            assert isinstance(event, TokenDelta) and event.seq == 1
            assert fake.started == 2

    run(main)


def test_closing_a_stream_drops_its_waiting_frame():
    fake = FakeCaptioner(gated=True)

    async def main():
        with scheduler_for(fake) as scheduler:
            a, b = scheduler.open_stream(), scheduler.open_stream()
            a.submit(frame(0, RED))
            await until(lambda: fake.started == 1, "a's frame to start")
            b.submit(frame(0, BLUE))
            b.close()
            fake.allow(2)
            await next_caption(a)
            # b was never served, so a frame of b still waiting would be taken before a's next one.
            a.submit(frame(1, GREEN))
            assert (await next_caption(a))[0].seq == 1
            assert fake.seen == [RED, GREEN]
            with pytest.raises(RuntimeError, match="closed"):
                b.submit(frame(1, BLUE))

    run(main)


def test_waiting_frames_of_several_streams_run_as_one_batch():
    fake = FakeCaptioner(gated=True, max_batch=2)

    async def main():
        with scheduler_for(fake) as scheduler:
            assert scheduler.max_batch == 2
            a, b, c, d = (scheduler.open_stream() for _ in range(4))
            a.submit(frame(0, RED))
            await until(lambda: fake.started == 1, "a's frame to start")
            b.submit(frame(10, GREEN))
            c.submit(frame(20, BLUE))
            d.submit(frame(30, YELLOW))
            fake.allow(3)
            results = {}
            for stream, colour in ((a, RED), (b, GREEN), (c, BLUE), (d, YELLOW)):
                caption, tokens = await next_caption(stream)
                # Each stream gets its own item's tokens and text, never a neighbour's.
                assert caption.caption.text == "".join(t.text for t in tokens) == words_of(colour)
                results[colour] = caption.seq
            assert results == {RED: 0, GREEN: 10, BLUE: 20, YELLOW: 30}
            assert fake.batches == [1, 2, 1]

    run(main)


def test_a_closed_stream_in_a_batch_lets_the_others_finish():
    fake = FakeCaptioner(gated=True, max_batch=2, token_delay=0.01)

    async def main():
        with scheduler_for(fake) as scheduler:
            first, a, b = scheduler.open_stream(), scheduler.open_stream(), scheduler.open_stream()
            first.submit(frame(0, GREY))
            await until(lambda: fake.started == 1, "the first frame to start")
            a.submit(frame(1, RED))
            b.submit(frame(2, BLUE))
            fake.allow()
            await until(lambda: fake.started == 2, "the batch of a and b to start")
            assert fake.batches == [1, 2]
            b.close()
            fake.allow()
            caption, tokens = await next_caption(a)
            # a still needed the generation, so it ran until a's caption was complete.
            assert caption.caption.text == "".join(t.text for t in tokens) == words_of(RED)
            assert not any(isinstance(e, FrameCaption) for e in _drain(b))

    run(main)


def test_settings_can_cap_the_batch_below_the_models():
    assert Scheduler(FakeCaptioner(max_batch=8), max_batch=3).max_batch == 3
    assert Scheduler(FakeCaptioner(max_batch=2), max_batch=16).max_batch == 2
    assert Scheduler(FakeCaptioner(max_batch=4)).max_batch == 4


def test_a_task_the_model_cannot_do_is_refused_at_submit():
    async def main():
        with scheduler_for(FakeCaptioner()) as scheduler:
            stream = scheduler.open_stream()
            with pytest.raises(UnsupportedTaskError, match="supports: caption, query"):
                stream.submit(frame(0, task=Task.detect("cup")))

    run(main)


def test_a_model_failure_is_reported_and_the_worker_carries_on():
    fake = FakeCaptioner(fail_with=RuntimeError("CUDA out of memory"))

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(5, RED))
            error = await next_event(stream)
            assert isinstance(error, FrameError)
            assert (error.seq, error.code) == (5, ErrorCode.MODEL_ERROR)
            assert error.message == "The model failed on this frame: RuntimeError: CUDA out of memory"
            fake.fail_with = None
            stream.submit(frame(6, GREEN))
            caption, _ = await next_caption(stream)
            assert caption.seq == 6

    run(main)


class EagerFailure(FakeCaptioner):
    """A backend whose `generate` itself raises (before returning any iterator)."""

    def generate(self, requests):
        raise CamcapError("The model file is damaged: run `camcap pull` again.")


def test_a_backend_failing_before_its_first_event_is_reported_and_its_batch_counted(caplog):
    recorder = Recorder()

    async def main():
        with scheduler_for(EagerFailure(), observer=recorder) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(5, RED))
            error = await next_event(stream)
            assert isinstance(error, FrameError) and (error.seq, error.code) == (5, ErrorCode.MODEL_ERROR)
            await until(lambda: recorder.batches == [1], "the failed batch to be reported")

    run(main)
    assert "Bug in the scheduler" not in caplog.text


class ClosableStream:
    """A backend's event iterator that is not a generator: closing it is what stops the model
    (as a thread-backed streamer or an HTTP response would), and nothing closes it by itself."""

    def __init__(self, events: Iterator) -> None:
        self.events = events
        self.closed = threading.Event()

    def __iter__(self) -> ClosableStream:
        return self

    def __next__(self):
        return next(self.events)

    def close(self) -> None:
        self.closed.set()


class ClosableCaptioner(FakeCaptioner):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.iterators: list[ClosableStream] = []

    def generate(self, requests):
        iterator = ClosableStream(super().generate(requests))
        self.iterators.append(iterator)
        return iterator


def test_the_backends_iterator_is_closed_when_its_stream_closes_mid_caption():
    fake = ClosableCaptioner(token_delay=0.005, words=2000)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(0, RED))
            assert isinstance(await next_event(stream), TokenDelta)
            stream.close()
            closed = fake.iterators[0].closed
            assert await asyncio.to_thread(closed.wait, WAIT), "the generation was never closed"

    run(main)


@pytest.mark.parametrize(
    ("failure", "code"),
    [
        (CamcapError("The model file is damaged: run `camcap pull` again."), ErrorCode.MODEL_ERROR),
        (UnsupportedTaskError("This model cannot point."), ErrorCode.UNSUPPORTED_TASK),
    ],
    ids=["camcap-error", "unsupported-task"],
)
def test_a_failure_camcap_explains_reaches_the_stream_in_its_own_words(failure, code):
    fake = FakeCaptioner(fail_with=failure)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(5, RED))
            error = await next_event(stream)
            assert isinstance(error, FrameError)
            assert (error.seq, error.code, error.message) == (5, code, str(failure))

    run(main)


def test_close_cancels_the_caption_in_progress_and_stops_the_worker():
    fake = FakeCaptioner(token_delay=0.005, words=2000)

    async def main():
        scheduler = Scheduler(fake)
        scheduler.start()
        stream = scheduler.open_stream()
        stream.submit(frame(0, RED))
        assert isinstance(await next_event(stream), TokenDelta)
        await asyncio.to_thread(scheduler.close)
        assert not scheduler.running
        assert fake.closed_early == 1
        event = await past_tokens(stream)
        assert isinstance(event, FrameError) and event.code is ErrorCode.SERVER_CLOSING
        assert (event.seq, event.message) == (None, "The server is shutting down; reconnect later.")
        stream.submit(frame(1, RED))  # refused politely: the stream's owner hears why
        error = await next_event(stream)
        assert isinstance(error, FrameError) and (error.seq, error.code) == (1, ErrorCode.SERVER_CLOSING)
        assert error.message == "The server is shutting down."
        with pytest.raises(RuntimeError) as refused:
            scheduler.open_stream()
        assert str(refused.value) == "The scheduler is closed; no new stream can be opened."

    run(main)
    assert not [t for t in threading.enumerate() if t.name == "camcap-model-worker"]


def test_start_twice_is_an_error():
    scheduler = Scheduler(FakeCaptioner())
    scheduler.start()
    try:
        with pytest.raises(RuntimeError) as error:
            scheduler.start()
        assert str(error.value) == "The scheduler is already started; call start() once."
    finally:
        scheduler.close()


@pytest.mark.parametrize(
    ("concurrency", "names"),
    [(1, ["camcap-model-worker"]), (2, ["camcap-model-worker-0", "camcap-model-worker-1"])],
)
def test_the_worker_threads_are_named_for_camcap(concurrency, names):
    """Named so that a stack dump (py-spy, faulthandler) or a thread-aware log shows the model's threads."""
    scheduler = Scheduler(FakeCaptioner(concurrency=concurrency))
    scheduler.start()
    try:
        assert sorted(t.name for t in threading.enumerate() if t.name.startswith("camcap-model-worker")) == names
    finally:
        scheduler.close()


def test_close_gives_up_on_a_hung_model_after_its_timeout(caplog):
    """A model step that never ends must not hang the server's shutdown: close() waits `timeout`
    seconds, warns, and returns while the worker is still stuck."""
    fake = FakeCaptioner(gated=True)

    async def main():
        scheduler = Scheduler(fake)
        scheduler.start()
        stream = scheduler.open_stream()
        stream.submit(frame(0, RED))
        await until(lambda: fake.started == 1, "the model to start (and hang at its gate)")
        await asyncio.to_thread(scheduler.close, 0.05)
        assert scheduler.running  # still stuck in the model: close() did not wait for it
        fake.allow()  # unstick it, so the test leaves no thread behind
        await until(lambda: not scheduler.running, "the worker to end once the model returns")

    run(main)
    assert "The model worker did not stop within 0 s" in caplog.text


def test_closing_the_scheduler_after_a_clients_event_loop_ended_is_quiet():
    """A client whose event loop ended without closing its stream (a crashed or stopped app) is
    nobody to tell: the scheduler's close still stops the worker instead of raising."""
    fake = FakeCaptioner()
    scheduler = Scheduler(fake)
    scheduler.start()

    async def use_and_leave_open():
        stream = scheduler.open_stream()
        stream.submit(frame(0, RED))
        await next_caption(stream)

    try:
        run(use_and_leave_open)  # its loop is closed now; the stream is still open
        assert scheduler.stream_count == 1
    finally:
        scheduler.close()  # posts the closing notice to that stream: its closed loop refuses it
    assert not scheduler.running


def test_a_sink_receives_events_instead_of_the_queue():
    received: list[StreamEvent] = []

    async def main():
        with scheduler_for(FakeCaptioner(words=2)) as scheduler:
            stream = scheduler.open_stream(sink=received.append)
            stream.submit(frame(3, RED))
            await until(lambda: any(isinstance(e, FrameCaption) for e in received), "the caption")
            assert stream.events.empty()
            assert [type(e).__name__ for e in received] == ["TokenDelta", "TokenDelta", "FrameCaption"]

    run(main)


def _drain(stream: Stream) -> list[StreamEvent]:
    events = []
    while not stream.events.empty():
        events.append(stream.events.get_nowait())
    return events


# --- change gating -------------------------------------------------------------------------------


def shot(seq: int, scene: Scene = BASE, *, noise_seed: int = 0, quality: int = 80, task: Task | None = None, **kwargs):
    """A camera-like frame of `scene`, with its change signature, as the WebSocket path makes it."""
    image = shoot(render(scene), quality=quality, seed=noise_seed)
    return Frame(seq=seq, image=image, task=task or Task.caption(), signature=signature(image), **kwargs)


MOVED = Scene(cup=(326, 200))  # the cup moved by 5 % of the width


def test_a_cell_counts_as_changed_when_it_moved_by_more_than_eight_levels():
    def grey(level: int):
        return signature(Image.new("L", (64, 48), level))

    assert difference(grey(100), grey(108)) == 0.0
    assert difference(grey(100), grey(109)) == 100.0


async def expect_unchanged(stream: Stream, seq: int, reference: int) -> FrameUnchanged:
    event = await next_event(stream)
    assert isinstance(event, FrameUnchanged), f"expected frame {seq} to be unchanged, got {event}"
    assert (event.seq, event.reference_seq) == (seq, reference)
    return event


@pytest.mark.parametrize(
    "again",
    [
        pytest.param({"noise_seed": 0}, id="identical"),
        pytest.param({"noise_seed": 0, "quality": 60}, id="re-encoded"),
        pytest.param({"noise_seed": 5}, id="new-sensor-noise"),
    ],
)
def test_a_frame_of_the_same_scene_is_answered_unchanged_without_the_model(again):
    fake = FakeCaptioner()

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(shot(0, captured_at=100.0))
            await next_caption(stream)
            stream.submit(shot(1, captured_at=200.0, **again))
            unchanged = await expect_unchanged(stream, 1, reference=0)
            assert unchanged.captured_at == 200.0 and 0 <= unchanged.difference < StreamOptions().change_threshold
            stream.submit(shot(2, captured_at=300.0, **again))
            await expect_unchanged(stream, 2, reference=0)
            stream.submit(shot(3, MOVED))
            caption, _ = await next_caption(stream)
            assert (caption.seq, caption.unchanged, caption.skipped) == (3, 2, 0)  # both, counted once each
            assert len(fake.seen) == 2 and stream.unchanged_total == 2

    run(main)


def test_a_threshold_of_zero_captions_every_frame():
    fake = FakeCaptioner()

    async def main():
        with scheduler_for(fake, stream_options=StreamOptions(change_threshold=0)) as scheduler:
            stream = scheduler.open_stream()
            for seq in range(3):
                stream.submit(shot(seq))
                assert (await next_caption(stream))[0].seq == seq
            assert len(fake.seen) == 3 and stream.unchanged_total == 0

    run(main)


def test_a_still_scene_is_captioned_again_every_camcap_max_unchanged_s(monkeypatch):
    """The setting, read from the environment, reaches each stream and forces a fresh caption of
    an unchanged scene once the last captioned frame is that old (on the scheduler's own clock)."""
    monkeypatch.setenv("CAMCAP_MAX_UNCHANGED_S", "5")
    clock = [1000.0]
    monkeypatch.setattr(scheduler_module, "monotonic", lambda: clock[0])
    fake = FakeCaptioner()

    async def main():
        with scheduler_for(fake, stream_options=Settings().stream_options()) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(shot(0))  # taken by the model at 1000.0
            await next_caption(stream)
            clock[0] = 1004.9
            stream.submit(shot(1))
            await expect_unchanged(stream, 1, reference=0)
            clock[0] = 1005.0  # five seconds after frame 0 was taken: captioned, unchanged or not
            stream.submit(shot(2))
            caption, _ = await next_caption(stream)
            assert (caption.seq, caption.unchanged) == (2, 1)
            clock[0] = 1009.9  # the five seconds now count from frame 2
            stream.submit(shot(3))
            await expect_unchanged(stream, 3, reference=2)
            assert len(fake.seen) == 2

    run(main)


def test_a_new_task_or_configuration_forces_a_caption_of_the_same_scene():
    fake = FakeCaptioner()

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(shot(0))
            await next_caption(stream)
            stream.submit(shot(1, task=Task.query("Is the cup still there?")))
            assert (await next_caption(stream))[0].seq == 1
            stream.submit(shot(2, task=Task.query("Is the cup still there?")))
            await expect_unchanged(stream, 2, reference=1)
            stream.configure(StreamOptions())  # e.g. the page re-sent its config
            stream.submit(shot(3, task=Task.query("Is the cup still there?")))
            assert (await next_caption(stream))[0].seq == 3
            assert len(fake.seen) == 3

    run(main)


def test_an_unchanged_frame_is_compared_with_the_frame_being_captioned_and_drops_a_waiting_one():
    fake = FakeCaptioner(gated=True)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(shot(0))
            await until(lambda: fake.started == 1, "frame 0 to start")
            stream.submit(shot(1, MOVED))  # waits...
            stream.submit(shot(2, noise_seed=3))  # ...but the scene is back to what frame 0 shows
            await expect_unchanged(stream, 2, reference=0)
            fake.allow()
            assert (await next_caption(stream))[0].seq == 0
            # Had frame 1 still been waiting, the model would take it next and caption it first.
            stream.submit(shot(3, MOVED))
            fake.allow()
            caption, _ = await next_caption(stream)
            assert (caption.seq, caption.skipped, caption.unchanged) == (3, 1, 1)
            assert fake.started == 2

    run(main)


def test_a_frame_whose_reference_failed_is_captioned():
    fake = FakeCaptioner(fail_with=RuntimeError("CUDA out of memory"))

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(shot(0))
            assert isinstance(await next_event(stream), FrameError)
            fake.fail_with = None
            stream.submit(shot(1))  # no caption describes frame 0: this one must be captioned
            assert (await next_caption(stream))[0].seq == 1

    run(main)


# --- stale-work cut ------------------------------------------------------------------------------

CUT = StreamOptions(cut_stale=True, stale_after_ms=100)


def test_a_stale_generation_is_cut_and_the_newest_frame_captioned():
    fake = FakeCaptioner(gated=True, words=50)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream(options=CUT)
            stream.submit(shot(0, captured_at=1000.0))
            await until(lambda: fake.started == 1, "frame 0 to start")
            stream.submit(shot(1, MOVED, captured_at=1500.0))
            fake.allow(2)
            error = await past_tokens(stream)
            assert isinstance(error, FrameError) and (error.seq, error.code) == (0, ErrorCode.SUPERSEDED)
            # Cut at its first token: the check runs after every event of the backend.
            assert error.message == (
                "Cut short after 1 tokens: frame 1 of this stream shows a changed scene and was captured more "
                "than 100 ms later, so it is captioned instead."
            )
            caption, _ = await next_caption(stream)
            assert caption.seq == 1 and caption.caption.text.startswith(words_of(fake.seen[1]))
            assert fake.closed_early == 1 and stream.cut_total == 1

    run(main)


def test_each_cut_is_counted_and_a_stream_can_be_cut_again_after_a_caption():
    fake = FakeCaptioner(gated=True, words=50)

    async def until_caption(stream: Stream) -> tuple[FrameCaption, list[FrameError]]:
        errors = []
        while not isinstance(event := await next_event(stream), FrameCaption):
            if isinstance(event, FrameError):
                errors.append(event)
        return event, errors

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream(options=CUT)
            for first, started in ((0, 1), (2, 3)):
                stream.submit(shot(first, captured_at=1000.0 * (first + 1)))
                await until(lambda started=started: fake.started == started, f"frame {first} to start")
                stream.submit(shot(first + 1, MOVED, captured_at=1000.0 * (first + 1) + 500))
                fake.allow(2)
                caption, errors = await until_caption(stream)
                assert caption.seq == first + 1
                assert [(e.seq, e.code) for e in errors] == [(first, ErrorCode.SUPERSEDED)]
            assert stream.cut_total == 2 and fake.closed_early == 2

    run(main)


def test_a_cut_says_how_many_tokens_the_cut_caption_had_streamed():
    """The superseded message counts every token the stream was sent of the cut frame, not just
    the first: the newer frame arrives only after several tokens were on screen."""
    fake = FakeCaptioner(token_delay=0.01, words=2000)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream(options=CUT)
            stream.submit(shot(0, captured_at=1000.0))
            tokens = 0
            while tokens < 3:
                event = await next_event(stream)
                assert isinstance(event, TokenDelta)
                tokens += 1
            stream.submit(shot(1, MOVED, captured_at=1500.0))
            while isinstance(event := await next_event(stream), TokenDelta):
                tokens += 1  # written before the worker saw the newer frame
            assert isinstance(event, FrameError) and (event.seq, event.code) == (0, ErrorCode.SUPERSEDED)
            assert event.message.startswith(f"Cut short after {tokens} tokens: frame 1 of this stream")
            assert isinstance(event := await next_event(stream), TokenDelta) and event.seq == 1

    run(main)


def test_a_shared_batch_is_not_cut_while_one_item_replaced_a_cut_frame():
    """The frame that replaced a cut one is never cut, even in a batch where every other item is
    stale (a batch is cut only when every item still wanted is)."""
    fake = FakeCaptioner(gated=True, words=50, max_batch=2)

    async def main():
        with scheduler_for(fake, stream_options=CUT) as scheduler:
            a, b = scheduler.open_stream(), scheduler.open_stream()
            a.submit(shot(0, captured_at=1000.0))
            await until(lambda: fake.started == 1, "a's first frame to start")
            a.submit(shot(1, MOVED, captured_at=1500.0))  # cuts a's frame 0
            b.submit(shot(0, captured_at=1000.0))
            fake.allow()
            await until(lambda: fake.started == 2, "the batch of b's frame 0 and a's frame 1")
            assert fake.batches == [1, 2]
            a.submit(shot(2, captured_at=3000.0))  # changed and much newer: stale, but a's item is protected
            b.submit(shot(1, MOVED, captured_at=3000.0))  # changed and much newer: b's item is stale
            fake.allow(2)
            assert (await next_caption(b))[0].seq == 0
            errors = []
            while not isinstance(event := await next_event(a), FrameCaption):
                if isinstance(event, FrameError):
                    errors.append((event.seq, event.code))
            assert errors == [(0, ErrorCode.SUPERSEDED)] and event.seq == 1
            assert fake.closed_early == 1

    run(main)


def test_a_batch_is_cut_for_the_one_stream_left_when_the_other_closed():
    """A closed stream's item needs nothing: the batch is cut as soon as every item still wanted
    is stale, whichever place the closed one holds in the batch."""
    fake = FakeCaptioner(gated=True, words=50, max_batch=2)

    async def main():
        with scheduler_for(fake, stream_options=CUT) as scheduler:
            first, a, b = (scheduler.open_stream() for _ in range(3))
            first.submit(frame(0, GREY))
            await until(lambda: fake.started == 1, "the first frame to start")
            a.submit(shot(0, captured_at=1000.0))
            b.submit(shot(0, captured_at=1000.0))
            fake.allow()
            await until(lambda: fake.started == 2, "the batch of a and b to start")
            a.close()  # a comes first in the batch
            b.submit(shot(1, MOVED, captured_at=2000.0))
            fake.allow(2)
            tokens = 0
            while isinstance(event := await next_event(b), TokenDelta):
                tokens += 1
            assert isinstance(event, FrameError) and (event.seq, event.code) == (0, ErrorCode.SUPERSEDED)
            assert tokens < 50, "cut only once the closed stream's item was finished"
            assert (await next_caption(b))[0].seq == 1
            assert fake.closed_early == 1

    run(main)


@pytest.mark.parametrize(
    ("options", "newer"),
    [
        pytest.param(StreamOptions(), shot(1, MOVED, captured_at=1500.0), id="off-by-default"),
        pytest.param(CUT, shot(1, noise_seed=4, captured_at=1500.0), id="same-scene"),
        pytest.param(CUT, shot(1, MOVED, captured_at=1050.0), id="not-much-newer"),
    ],
)
def test_a_generation_is_not_cut_when_the_waiting_frame_does_not_make_it_stale(options, newer):
    fake = FakeCaptioner(gated=True, words=50)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream(options=options)
            stream.submit(shot(0, captured_at=1000.0))
            await until(lambda: fake.started == 1, "frame 0 to start")
            stream.submit(newer)
            fake.allow(2)
            first, before = await next_caption(stream)
            assert first.seq == 0 and len([e for e in before if isinstance(e, TokenDelta)]) == 50
            assert fake.closed_early == 0

    run(main)


def test_the_frame_that_replaced_a_cut_one_is_never_cut_itself():
    fake = FakeCaptioner(gated=True, words=50)

    async def main():
        with scheduler_for(fake) as scheduler:
            stream = scheduler.open_stream(options=CUT)
            stream.submit(shot(0, captured_at=1000.0))
            await until(lambda: fake.started == 1, "frame 0 to start")
            stream.submit(shot(1, MOVED, captured_at=1500.0))
            fake.allow()
            await until(lambda: fake.started == 2, "frame 1 to replace the cut frame 0")
            stream.submit(shot(2, captured_at=2000.0))  # changed again and much newer
            fake.allow(2)
            events = [await next_event(stream)]
            while not isinstance(events[-1], FrameCaption):
                events.append(await next_event(stream))
            assert events[-1].seq == 1, "a scene that keeps changing still gets captions"
            assert [e.code for e in events if isinstance(e, FrameError)] == [ErrorCode.SUPERSEDED]
            assert (await next_caption(stream))[0].seq == 2
            assert fake.closed_early == 1

    run(main)


def test_a_batch_shared_with_another_stream_is_not_cut_for_one_of_them():
    fake = FakeCaptioner(gated=True, words=20, max_batch=2)

    async def main():
        with scheduler_for(fake, stream_options=CUT) as scheduler:
            first, a, b = (scheduler.open_stream() for _ in range(3))
            first.submit(frame(0, GREY))
            await until(lambda: fake.started == 1, "the first frame to start")
            a.submit(shot(0, captured_at=1000.0))
            b.submit(shot(0, MOVED, captured_at=1000.0))
            fake.allow()
            await until(lambda: fake.started == 2, "the batch of a and b to start")
            assert fake.batches == [1, 2]
            a.submit(shot(1, MOVED, captured_at=2000.0))  # a's frame is stale; b still needs the batch
            fake.allow()
            assert (await next_caption(a))[0].seq == 0
            assert (await next_caption(b))[0].seq == 0
            assert fake.closed_early == 0
            fake.allow()
            assert (await next_caption(a))[0].seq == 1

    run(main)


class HeldBatchReport:
    """An observer that holds the worker in its first batch report until the test says `go`.

    The report comes after a cut generation is stopped and before the cut frame is answered, so
    the test can change the stream in between, as a client's frame arriving then would."""

    def __init__(self) -> None:
        self.reporting = threading.Event()
        self.go = threading.Event()

    def observe_event(self, event: StreamEvent) -> None:
        pass

    def observe_batch(self, size: int, seconds: float) -> None:
        if not self.reporting.is_set():
            self.reporting.set()
            assert self.go.wait(WAIT), "the test never let the batch report go on"


def test_a_cut_frame_is_answered_even_when_the_newer_frame_was_dropped_before_the_answer():
    """The scene went back to the cut frame's (a frame answered unchanged dropped the newer one)
    between the cut and its answer: the cut frame is still answered `superseded`, naming no frame."""
    fake = FakeCaptioner(gated=True, words=50)
    held = HeldBatchReport()

    async def main():
        with scheduler_for(fake, observer=held) as scheduler:
            stream = scheduler.open_stream(options=CUT)
            try:
                stream.submit(shot(0, captured_at=1000.0))
                await until(lambda: fake.started == 1, "frame 0 to start")
                stream.submit(shot(1, MOVED, captured_at=1500.0))
                fake.allow()
                assert await asyncio.to_thread(held.reporting.wait, WAIT), "frame 0 was never cut"
                stream.submit(shot(2, noise_seed=3, captured_at=1600.0))  # back to frame 0's scene
            finally:
                held.go.set()
            events = [await next_event(stream)]
            while not isinstance(events[-1], FrameError):
                events.append(await next_event(stream))
            unchanged = [e for e in events if isinstance(e, FrameUnchanged)]
            assert [(e.seq, e.reference_seq) for e in unchanged] == [(2, 0)]
            error = events[-1]
            assert (error.seq, error.code) == (0, ErrorCode.SUPERSEDED)
            assert error.message.startswith("Cut short after 1 tokens: a newer frame of this stream shows")
            assert fake.closed_early == 1 and stream.cut_total == 1

    run(main)


# --- batching window -----------------------------------------------------------------------------


def test_a_batch_window_gathers_frames_of_streams_that_arrive_nearly_together():
    fake = FakeCaptioner(max_batch=2)

    async def main():
        # A long window, so the test never depends on timing: the second frame ends it.
        with scheduler_for(fake, batch_window_ms=30_000) as scheduler:
            await one_batch_of_two_streams(scheduler, fake)

    run(main)


def test_a_batch_window_under_a_second_gathers_frames_too(monkeypatch):
    """The server's default window is 50 ms. On a stopped clock a lone frame's wait never runs
    out, so only the second stream's frame can end it: no timing involved."""
    monkeypatch.setattr(scheduler_module, "monotonic", lambda: 1000.0)
    fake = FakeCaptioner(max_batch=2)

    async def main():
        with scheduler_for(fake, batch_window_ms=50) as scheduler:
            waits = await one_batch_of_two_streams(scheduler, fake)
            assert waits[0] == pytest.approx(0.05)

    run(main)


def watch_window_waits(scheduler: Scheduler) -> list[float]:
    """The positive delays the worker computed (it then waits that long for more frames)."""
    waits: list[float] = []
    window_delay = scheduler.batch_window.delay

    def delay(**kwargs) -> float:
        seconds = window_delay(**kwargs)
        if seconds > 0:
            waits.append(seconds)
        return seconds

    scheduler.batch_window.delay = delay  # type: ignore[method-assign]
    return waits


async def one_batch_of_two_streams(scheduler: Scheduler, fake: FakeCaptioner) -> list[float]:
    """Stream a's frame alone makes the worker wait (without a window it would start the model on
    it); b's frame then joins it in one batch. Returns the waits the worker computed."""
    waits = watch_window_waits(scheduler)
    a, b = scheduler.open_stream(), scheduler.open_stream()
    a.submit(frame(0, RED))
    await until(lambda: waits, "the worker to wait for b's frame")
    b.submit(frame(0, BLUE))
    await next_caption(a)
    await next_caption(b)
    assert fake.batches == [2]
    return waits


def test_a_batch_window_never_holds_a_lone_stream():
    fake = FakeCaptioner(max_batch=4)

    async def main():
        with scheduler_for(fake, batch_window_ms=60_000) as scheduler:
            stream = scheduler.open_stream()
            stream.submit(frame(0, RED))
            await next_caption(stream)  # bounded by WAIT, far less than the window

    run(main)


def test_a_batch_window_does_not_wait_for_a_stream_that_has_gone_quiet(monkeypatch):
    monkeypatch.setattr(batching, "QUIET_AFTER_MIN_S", 0.05)
    fake = FakeCaptioner(max_batch=4)

    async def main():
        with scheduler_for(fake, batch_window_ms=60_000) as scheduler:
            scheduler.open_stream()  # a paused page: open, sending nothing
            live = scheduler.open_stream()
            await asyncio.sleep(0.2)
            live.submit(frame(0, RED))
            await next_caption(live)  # bounded by WAIT, far less than the window
            assert fake.batches == [1]

    run(main)


def test_streams_still_take_turns_with_a_batch_window():
    fake = FakeCaptioner(gated=True, max_batch=2)

    async def main():
        with scheduler_for(fake, batch_window_ms=30_000) as scheduler:
            a, b, c = (scheduler.open_stream() for _ in range(3))
            a.submit(frame(0, RED))
            b.submit(frame(0, GREEN))  # a full batch: taken at once
            await until(lambda: fake.started == 1, "the first batch")
            a.submit(frame(1, YELLOW))
            c.submit(frame(0, BLUE))  # c has not been served yet: it goes first
            fake.allow(2)
            for stream in (a, b, a, c):
                await next_caption(stream)
            assert fake.batches == [2, 2]
            assert fake.seen == [RED, GREEN, BLUE, YELLOW]

    run(main)


def test_scheduler_options_are_checked():
    with pytest.raises(ValueError, match="batch_window_ms"):
        Scheduler(FakeCaptioner(), batch_window_ms=-1)


# --- backends that run several generations at once (ModelInfo.concurrency) ------------------------


def test_a_concurrent_backend_runs_streams_side_by_side():
    fake = FakeCaptioner(gated=True, concurrency=3)

    async def main():
        with scheduler_for(fake) as scheduler:
            a, b, c = (scheduler.open_stream() for _ in range(3))
            for stream, colour in ((a, RED), (b, GREEN), (c, BLUE)):
                stream.submit(frame(0, colour))
            # All three are with the model before any may finish: no stream waits for another's caption.
            await until(lambda: fake.started == 3, "three generations in flight at once")
            fake.allow(3)
            for stream, colour in ((a, RED), (b, GREEN), (c, BLUE)):
                caption, _ = await next_caption(stream)
                assert caption.caption.text == words_of(colour)
            assert fake.batches == [1, 1, 1]

    run(main)


def test_a_concurrent_backend_still_gives_each_stream_one_frame_at_a_time_newest_first():
    fake = FakeCaptioner(gated=True, concurrency=4)

    async def main():
        with scheduler_for(fake) as scheduler:
            a, b = scheduler.open_stream(), scheduler.open_stream()
            a.submit(frame(0, RED))
            await until(lambda: fake.started == 1, "a's first frame to start")
            a.submit(frame(1, GREEN))  # a is busy: these wait in its one slot, the newest winning
            a.submit(frame(2, YELLOW))
            b.submit(frame(0, BLUE))  # another stream is not held back by a's
            await until(lambda: fake.started == 2, "b's frame to start beside a's")
            await asyncio.sleep(0.05)  # room for a wrongly taken second frame of a
            assert fake.seen == [RED, BLUE]
            fake.allow(3)
            first, second = (await next_caption(a))[0], (await next_caption(a))[0]
            assert (first.seq, second.seq, second.skipped) == (0, 2, 1)
            assert second.caption.text == words_of(YELLOW)
            assert (await next_caption(b))[0].seq == 0
            assert fake.seen == [RED, BLUE, YELLOW]

    run(main)


def test_closing_a_concurrent_scheduler_stops_every_worker():
    fake = FakeCaptioner(gated=True, concurrency=2)

    async def main():
        scheduler = Scheduler(fake)
        scheduler.start()
        a, b = scheduler.open_stream(), scheduler.open_stream()
        a.submit(frame(0, RED))
        b.submit(frame(0, GREEN))
        await until(lambda: fake.started == 2, "both generations in flight")
        fake.allow(2)
        await asyncio.to_thread(scheduler.close)
        assert len(scheduler._threads) == 2
        assert not any(thread.is_alive() for thread in scheduler._threads)

    run(main)
