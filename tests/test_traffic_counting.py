"""Tracker and counting lines against scripted trajectories, one test per known failure mode of counting tools.

Detections are scripted (the detector is not under test here); they go through the same
:class:`CameraScene` the plugin uses: filter -> ByteTrack-style tracker -> counting lines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pytest

from plugins.traffic_counting.counting import CountingLine, LineCounter
from plugins.traffic_counting.decoders import Detection
from plugins.traffic_counting.options import TrafficCountingOptions
from plugins.traffic_counting.plugin import CameraScene
from plugins.traffic_counting.tracker import ByteTracker, TrackerConfig, TrackState

W, H = 640, 480


def det(cx: float, cy: float, w: float = 60, h: float = 40, score: float = 0.9, label: str = "car") -> Detection:
    return Detection(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, score, 0, label)


def scene(**options: Any) -> CameraScene:
    base: dict[str, Any] = {
        "model": "unused",
        "anchor": "centre",
        "lines": [{"name": "main", "points": [[0, 240], [640, 240]], "in_name": "south", "out_name": "north"}],
        "motion": {"enabled": False},
    }
    base.update(options)
    return CameraScene("cam", W, H, TrafficCountingOptions.model_validate(base))


def run(sc: CameraScene, frames: Iterable[Sequence[Detection]], fps: float = 10.0, t0: float = 0.0) -> list[Any]:
    crossings = []
    for i, dets in enumerate(frames):
        crossings += [c for c, _ in sc.step(list(dets), t0 + i / fps)]
    return crossings


def totals(sc: CameraScene) -> dict[str, dict[str, dict[str, int]]]:
    return sc.counter.counts.snapshot()


def test_a_vehicle_driving_down_counts_once_in_the_in_direction() -> None:
    sc = scene()
    crossings = run(sc, [[det(320, y)] for y in range(100, 400, 20)])
    assert [(c.line, c.direction, c.label) for c in crossings] == [("main", "south", "car")]
    assert totals(sc) == {"main": {"car": {"south": 1}}}


def test_objects_crossing_in_both_directions_at_once_are_counted_per_direction_and_class() -> None:
    sc = scene()
    frames = []
    for i in range(16):
        frames.append(
            [
                det(150, 100 + 20 * i, label="car"),  # southbound car
                det(450, 400 - 20 * i, label="truck", w=90, h=60),  # northbound truck
                det(300, 390 - 20 * i, w=20, h=50, label="person"),  # northbound person
            ]
        )
    run(sc, frames)
    assert totals(sc) == {
        "main": {"car": {"south": 1}, "truck": {"north": 1}, "person": {"north": 1}},
    }


def test_unconfirmed_track_is_never_counted() -> None:
    # A single spurious detection just past the line, then nothing: never confirmed.
    sc = scene(tracker={"min_hits": 3})
    crossings = run(sc, [[det(320, 230)], [det(320, 250)], [], [], [], []])
    assert crossings == []
    assert totals(sc) == {}


def test_crossing_seen_while_tentative_counts_once_confirmed() -> None:
    # Fast object: crosses between its first and second observation; confirmed only at the third.
    sc = scene(tracker={"min_hits": 3})
    crossings = run(sc, [[det(320, 200)], [det(320, 280)], [det(320, 320)], [det(320, 360)]])
    assert [(c.direction, c.track_id) for c in crossings] == [("south", 1)]
    assert crossings[0].ts == pytest.approx(0.05)  # interpolated crossing time, not the confirmation's


def test_jitter_on_the_line_is_not_double_counted() -> None:
    sc = scene(line_margin=8)
    ys = [200, 220, 238, 243, 236, 244, 237, 245, 239, 242, 236, 241, 260, 280, 300]
    crossings = run(sc, [[det(320, y)] for y in ys])
    assert [c.direction for c in crossings] == ["south"]


def test_jitter_that_never_leaves_the_band_does_not_count() -> None:
    sc = scene(line_margin=8)
    crossings = run(sc, [[det(320, 240 + (5 if i % 2 else -5))] for i in range(30)])
    assert crossings == []


def test_back_and_forth_counts_each_direction_at_most_once_per_track() -> None:
    sc = scene()
    # A cyclist circling over the line for 12 s: three full back-and-forth cycles.
    ys = [240 - 40 * np.cos(2 * np.pi * i / 40) for i in range(120)]
    crossings = run(sc, [[det(320, y, w=30, h=40, label="bicycle")] for y in ys])
    assert sorted(c.direction for c in crossings) == ["north", "south"]
    assert len({c.track_id for c in crossings}) == 1


def test_a_long_vehicle_waiting_on_the_line_is_not_counted_back() -> None:
    # A truck queueing over a vertical line; a coarse detector places its centre on its cab or on its
    # body by turns, about 30 px apart, so the centre hops back over the line while the truck waits.
    gate = [{"name": "gate", "points": [[330, 0], [330, 480]], "in_name": "west", "out_name": "east"}]
    xs = [430, 410, 390, 370, 355, 345, 320, 312, 340, 345, 340, 312, 310, 300, 280, 260, 240]
    sc = scene(lines=gate)
    crossings = run(sc, [[det(x, 240, w=120, h=50, label="truck")] for x in xs], fps=5.0)
    assert [(c.label, c.direction) for c in crossings] == [("truck", "west")]
    # One that really backs up until most of it is over the line again counts the way back: a
    # return needs the centre half the object's length past the line.
    back = [320, 312, 330, 345, 365, 380, 395, 400]
    sc = scene(lines=gate)
    crossings = run(sc, [[det(x, 240, w=120, h=50, label="truck")] for x in xs[:8] + back], fps=5.0)
    assert [(c.label, c.direction) for c in crossings] == [("truck", "west"), ("truck", "east")]


def test_without_count_returns_a_track_counts_once_per_line() -> None:
    sc = scene(count_returns=False)
    ys = [240 - 40 * np.cos(2 * np.pi * i / 40) for i in range(120)]
    crossings = run(sc, [[det(320, y, w=30, h=40, label="bicycle")] for y in ys])
    assert [c.direction for c in crossings] == ["south"]


def test_line_near_the_frame_edge_still_triggers() -> None:
    # Line 3 px above the bottom edge, default margin larger than the room below it.
    sc = scene(lines=[{"name": "edge", "points": [[0, 477], [640, 477]]}], anchor="bottom_centre", line_margin=10)
    frames = []
    for y2 in range(380, 481, 20):  # bottom of the box slides down to the frame edge and is clipped there
        frames.append([Detection(290, y2 - 50, 350, min(y2, 480), 0.9, 0, "car")])
    frames += [[Detection(290, 445, 350, 480, 0.9, 0, "car")]] * 2
    crossings = run(sc, frames)
    assert [(c.line, c.direction) for c in crossings] == [("edge", "in")]


def test_line_at_the_left_edge_counts_objects_leaving_the_frame() -> None:
    sc = scene(lines=[{"name": "exit", "points": [[4, 0], [4, 480]]}], line_margin=10)
    frames = [[det(x, 240)] for x in (200, 150, 100, 50, 20)]
    frames.append([Detection(0, 220, 25, 260, 0.8, 0, "car")])  # clipped at the edge
    frames.append([Detection(0, 220, 5, 260, 0.6, 0, "car")])
    frames += [[] for _ in range(25)]  # gone: counted when the tracker drops the track
    crossings = run(sc, frames)
    assert [c.direction for c in crossings] == ["in"]


def test_unconfirmed_track_leaving_the_frame_over_an_edge_line_is_not_counted() -> None:
    sc = scene(lines=[{"name": "exit", "points": [[4, 0], [4, 480]]}], tracker={"min_hits": 3})
    frames = [[Detection(0, 220, 25, 260, 0.8, 0, "car")], [Detection(0, 220, 3, 260, 0.6, 0, "car")]]
    frames += [[] for _ in range(25)]
    assert run(sc, frames) == []


def test_fast_object_at_low_fps_jumping_over_a_thin_line_is_counted() -> None:
    # 2 fps at 50 km/h: the car moves 100 px (1.7 car lengths) per frame, its boxes never overlap.
    sc = scene(lines=[{"name": "thin", "points": [[290, 0], [290, 480]]}], line_margin=4)
    crossings = run(sc, [[det(x, 300)] for x in (40, 140, 240, 340, 440, 540)], fps=2.0)
    assert [(c.direction, c.track_id) for c in crossings] == [("out", 1)]
    assert sc.tracker.tracks[0].hits == 6  # one track throughout, thanks to the centre gate
    assert crossings[0].ts == pytest.approx(1.0 + 0.5 * 50 / 100)


def test_crossing_outside_the_segment_does_not_count() -> None:
    sc = scene(lines=[{"name": "lane", "points": [[0, 240], [300, 240]]}])
    crossings = run(sc, [[det(500, y)] for y in range(100, 400, 20)])
    assert crossings == []


def test_occlusion_keeps_the_track_id_and_counts_once() -> None:
    sc = scene()
    frames: list[list[Detection]] = [[det(320, y)] for y in (120, 140, 160, 180)]
    frames += [[] for _ in range(6)]  # hidden behind a lamp post while crossing, 0.6 s at 10 fps
    frames += [[det(320, y)] for y in (300, 320, 340, 360)]
    crossings = run(sc, frames)
    assert [(c.direction, c.track_id) for c in crossings] == [("south", 1)]
    assert {t.id for t in sc.tracker.tracks} == {1}


def test_stop_and_go_on_the_line_with_low_score_detections_does_not_inflate_counts() -> None:
    # A queue of two cars brakes to a stop on the line (150 px/s to 0 in 1.5 s); while stopped the
    # detector is unsure (low scores, every third frame nothing), then they pull away. Each car
    # must count once, under one id.
    sc = scene()
    frames: list[list[Detection]] = []
    y, v = 135.0, 150.0
    for _ in range(15):
        frames.append([det(250, y), det(250, y - 60)])
        v = max(0.0, v - 10.0)
        y += v / 10
    stopped = [det(250, y, score=0.3), det(250, y - 60, score=0.25)]
    for i in range(20):
        frames.append([] if i % 3 == 2 else stopped)
    for _ in range(15):
        v = min(150.0, v + 10.0)
        y += v / 10
        frames.append([det(250, y), det(250, y - 60)])
    crossings = run(sc, frames)
    assert abs(stopped[0].y2 - 20 - 240) < 6  # the first car really stops on the line, inside the band
    assert totals(sc) == {"main": {"car": {"south": 2}}}
    assert sorted(c.track_id for c in crossings) == [1, 2]


def test_id_switch_after_a_long_stop_on_the_line_is_not_counted_twice() -> None:
    # The car crosses, stops just past the line and is lost longer than the tracker keeps tracks;
    # it comes back as a new id on the far side: still one crossing.
    sc = scene(tracker={"max_lost_s": 0.5})
    frames: list[list[Detection]] = [[det(320, y)] for y in (180, 200, 220, 250, 255)]
    frames += [[] for _ in range(10)]
    frames += [[det(320, y)] for y in (256, 270, 290, 310)]
    crossings = run(sc, frames)
    assert totals(sc) == {"main": {"car": {"south": 1}}}
    assert len({t.id for t in sc.tracker.tracks}) == 1 and sc.tracker.tracks[0].id != crossings[0].track_id


def test_id_switch_between_two_cars_side_by_side_does_not_double_count() -> None:
    # Two cars cross side by side; mid-crossing their detections swap order in the list and one
    # frame misses one of them. Two cars, two crossings.
    sc = scene()
    frames: list[list[Detection]] = []
    for i in range(12):
        a, b = det(290, 120 + 20 * i), det(352, 118 + 20 * i)
        frames.append([a, b] if i % 2 else [b, a])
    frames[6] = [frames[6][0]]
    run(sc, frames)
    assert totals(sc) == {"main": {"car": {"south": 2}}}


def test_line_class_filter_only_counts_its_classes() -> None:
    sc = scene(lines=[{"name": "bikes", "points": [[0, 240], [640, 240]], "classes": ["bicycle"]}])
    frames = [[det(100, y, label="car"), det(400, y, w=30, h=40, label="bicycle")] for y in range(120, 380, 20)]
    run(sc, frames)
    assert totals(sc) == {"bikes": {"bicycle": {"in": 1}}}


def test_class_of_a_track_is_its_majority_class() -> None:
    sc = scene()
    frames = [[det(320, y, label="truck" if i == 3 else "car")] for i, y in enumerate(range(120, 400, 20))]
    crossings = run(sc, frames)
    assert [c.label for c in crossings] == ["car"]


def test_a_lost_track_is_not_taken_over_by_an_object_of_another_class() -> None:
    # A person walks out of the frame on the right; a car drives in where the person just left. The
    # person's lost track overlaps the car's first boxes, but a lost track found again as another class
    # is another object: the car gets its own track and class.
    sc = scene(lines=[{"name": "gate", "points": [[500, 0], [500, 480]], "in_name": "west", "out_name": "east"}])
    person = [[det(400 + 10 * i, 240, w=20, h=50, label="person")] for i in range(23)]
    car = [[det(630 - 20 * k, 240, label="car")] for k in range(12)]
    run(sc, person + [[], []] + car)
    counts = totals(sc)["gate"]
    assert set(counts) == {"person", "car"}
    assert sum(counts["person"].values()) == 1 and sum(counts["car"].values()) == 1
    assert set(counts["person"]) != set(counts["car"])  # opposite directions


def test_a_detection_of_another_class_arriving_behind_a_track_does_not_take_it_over() -> None:
    # A car crawls west over the line and is missed for a frame just as a truck arrives behind it
    # in the queue. The truck's box overlaps the car's (IoU 0.34) but its centre is behind the car's
    # box: another object, which gets its own track and counts when it crosses in turn.
    sc = scene(lines=[{"name": "gate", "points": [[300, 0], [300, 480]], "in_name": "west", "out_name": "east"}])
    car = [[det(x, 240)] for x in range(342, 281, -10)]
    truck = [[det(x, 240, w=140, h=50, label="truck")] for x in (312, 312, 312, 300, 288, 276, 264, 252)]
    run(sc, car + truck, fps=5.0)
    assert totals(sc) == {"gate": {"car": {"west": 1}, "truck": {"west": 1}}}
    by_label = {t.label: t for t in sc.tracker.tracks}
    assert by_label["car"].id != by_label["truck"].id and by_label["car"].state == TrackState.LOST


def test_an_object_that_comes_into_view_on_the_line_counts_the_way_it_leaves() -> None:
    # A car comes out from behind a van parked on the line, first seen inside the hysteresis band
    # (2 px past the line): it cannot have come from anywhere but the other side. Likewise a person
    # stepping out on the line and walking back north.
    sc = scene()
    parked = det(100, 100, label="truck")
    frames = [[parked] for _ in range(3)]
    frames += [[parked, det(320, y)] for y in range(242, 400, 20)]
    frames += [[parked, det(500, y, w=20, h=50, label="person")] for y in range(237, 100, -10)]
    crossings = run(sc, frames)
    assert totals(sc) == {"main": {"car": {"south": 1}, "person": {"north": 1}}}
    assert crossings[0].ts == pytest.approx(0.3)  # when it was first seen


def test_an_object_first_seen_on_the_line_counts_the_side_it_settles_on() -> None:
    # A truck arriving from the right is first seen (late) with its detection on its cab, in the
    # band, then on its body 10 px back: that is not where it came from. It drives on west: it
    # settles half its length past the line on the west side and counts once, westbound.
    sc = scene(lines=[{"name": "gate", "points": [[300, 0], [300, 480]], "in_name": "west", "out_name": "east"}])
    parked = det(100, 400, label="truck")
    frames = [[parked] for _ in range(3)]
    frames += [[parked, det(x, 240, w=120, h=50, label="truck")] for x in (303, 313, 310, 300, 280, 260, 240, 220)]
    run(sc, frames, fps=5.0)
    assert totals(sc) == {"gate": {"truck": {"west": 1}}}


def test_objects_on_the_line_when_counting_starts_are_not_counted() -> None:
    # Nobody saw where they came from.
    sc = scene()
    run(sc, [[det(320, y)] for y in range(242, 400, 20)])
    assert totals(sc) == {}


def test_a_vehicle_seen_again_on_the_line_under_a_new_track_is_not_counted_again() -> None:
    # A truck crosses and counts; it stops just past the line, is missed for longer than the tracker
    # keeps tracks and is seen again on the line (its detection now centred on its cab). The new
    # track comes out of the band on the side the old one counted, a second later and at the same
    # place along the line: the same truck, not counted again. A car doing the same 40 px along the
    # line (the next lane: more than half a car length away), also within two seconds, is another
    # object and counts.
    sc = scene(tracker={"max_lost_s": 0.5})
    frames: list[list[Detection]] = [[det(320, y, w=60, h=90, label="truck")] for y in (150, 180, 210, 240, 252)]
    frames += [[] for _ in range(10)]
    frames += [[det(322, y, w=60, h=90, label="truck")] for y in (243, 250, 262, 280)]
    frames += [[], []]
    frames += [[det(360, y)] for y in (243, 262, 282, 300)]
    run(sc, frames)
    assert totals(sc) == {"main": {"truck": {"south": 1}, "car": {"south": 1}}}


def _queue_then_hidden(hidden_from: float, lane_y: float = 240) -> list[list[Detection]]:
    # A car (60 px long) creeps forward in a queue (20 px/s at 5 fps), goes behind a tree at
    # ``hidden_from`` and pulls away behind it: it comes out 1.4 s later 105 px on, more than a car
    # length ahead of where it coasted (48 px on), and leaves at 150 px/s.
    frames = [[det(hidden_from - 40 + 4 * i, lane_y)] for i in range(11)]
    frames += [[] for _ in range(6)]
    frames += [[det(x, lane_y)] for x in (hidden_from + 105, hidden_from + 135, hidden_from + 165)]
    return frames


def test_a_car_pulling_away_behind_an_occluder_is_found_again_along_its_lane() -> None:
    gate = [{"name": "gate", "points": [[330, 0], [330, 480]], "in_name": "west", "out_name": "east"}]
    sc = scene(lines=gate)
    run(sc, _queue_then_hidden(260), fps=5.0)
    assert totals(sc) == {"gate": {"car": {"east": 1}}}
    assert [t.id for t in sc.tracker.tracks] == [1]
    # Without the lane rule the car comes out as a new track past the line: the crossing is lost.
    sc = scene(lines=gate, tracker={"lane_refind": False})
    run(sc, _queue_then_hidden(260), fps=5.0)
    assert totals(sc) == {}


def test_a_car_whose_front_was_last_seen_as_another_class_is_found_again_at_its_own_size() -> None:
    # A car waits in a queue, pulls away, and as it goes behind a tree only its front is seen for a
    # frame, as a bicycle; it comes out 88 px further on, past the line. How far it can have got
    # comes from the car's own length (not the bicycle's) and its speed over the last second (not
    # the last two, which include the wait).
    gate = [{"name": "gate", "points": [[300, 0], [300, 480]], "in_name": "west", "out_name": "east"}]
    frames = [[det(200, 240)] for _ in range(10)]
    frames += [[det(x, 240)] for x in (210, 225, 245)]
    frames += [[det(262, 240, w=24, label="bicycle")], [], []]
    frames += [[det(x, 240)] for x in (350, 380, 410)]
    sc = scene(lines=gate)
    run(sc, frames, fps=5.0)
    assert totals(sc) == {"gate": {"car": {"east": 1}}}
    assert [t.id for t in sc.tracker.tracks] == [1]


def test_a_lost_track_is_not_found_again_off_its_lane_or_behind_it() -> None:
    sc = scene(lines=[{"name": "gate", "points": [[330, 0], [330, 480]], "in_name": "west", "out_name": "east"}])
    frames = _queue_then_hidden(260)[:17]
    frames += [[det(365, 300)], [det(395, 300)]]  # a car one lane over, where the hidden one would come out
    frames += [[det(150, 240)], [det(170, 240)]]  # the next car of the lane, behind it
    run(sc, frames, fps=5.0)
    assert totals(sc) == {}
    tracks = {t.id: t for t in sc.tracker.tracks}
    assert sorted(tracks) == [1, 2, 3]
    assert tracks[1].state == TrackState.LOST and tracks[1].seen[-1][1] == 260


def test_people_merged_into_one_detection_while_passing_each_other_keep_their_ways() -> None:
    # Two people walk towards each other along a pavement and pass on the line. A coarse detector (a
    # centroid grid with 13-pixel cells) places each on its cell and sees one person while they are
    # less than two cells apart. Each track must come out of the merge heading the way it went in.
    sc = scene(
        lines=[{"name": "gate", "points": [[320, 0], [320, 480]], "in_name": "west", "out_name": "east"}],
        tracker={"min_hits": 2},
    )
    cell = 40 / 3

    def on_grid(x: float) -> float:
        return (int(x / cell) + 0.5) * cell

    frames = []
    for i in range(70):
        a, b = 200 + 4.4 * i, 440 - 4.4 * i
        if abs(on_grid(a) - on_grid(b)) < 2 * cell:
            frames.append([det(on_grid((a + b) / 2), 300, w=27, h=27, label="person")])
        else:
            frames.append(
                [det(on_grid(a), 300, w=27, h=27, label="person"), det(on_grid(b), 300, w=27, h=27, label="person")]
            )
    run(sc, frames, fps=5.0)
    assert totals(sc) == {"gate": {"person": {"west": 1, "east": 1}}}


def test_one_walker_placed_in_two_cells_by_turns_counts_once() -> None:
    # A walker on the boundary between two rows of a centroid grid is placed in one row, then the
    # other, for stretches of a few frames, and for a moment in both (two tracks start); each row then
    # feeds its own track by turns.
    sc = scene(lines=[{"name": "gate", "points": [[320, 0], [320, 480]], "in_name": "west", "out_name": "east"}])
    rows = [(293,)] * 6 + [(293, 307)] * 2 + [(307,), (307,), (293,), (293,), (293,), (307,), (307,)] * 5

    def walker(i: int, y: float) -> Detection:
        return det(250 + 4.4 * i, y, w=27, h=27, label="person")

    frames = [[walker(i, y) for y in ys] for i, ys in enumerate(rows[:40])]
    run(sc, frames, fps=5.0)
    assert totals(sc) == {"gate": {"person": {"east": 1}}}


def test_normalised_line_coordinates_scale_to_the_frame() -> None:
    sc = scene(units="normalised", lines=[{"name": "n", "points": [[0, 0.5], [1, 0.5]]}])
    assert sc.lines[0].p1 == (0.0, 240.0) and sc.lines[0].p2 == (640.0, 240.0)
    crossings = run(sc, [[det(320, y)] for y in range(120, 400, 20)])
    assert len(crossings) == 1


def test_roi_ignores_detections_outside_it() -> None:
    sc = scene(roi=[[[0, 0], [320, 0], [320, 480], [0, 480]]])
    run(sc, [[det(100, y), det(500, y)] for y in range(120, 400, 20)])
    assert totals(sc) == {"main": {"car": {"south": 1}}}


def test_speed_is_reported_in_metres_per_second_with_a_ground_scale() -> None:
    sc = scene(speed={"metres_per_pixel": 0.05})
    out: list[Any] = []
    for i, y in enumerate(range(100, 400, 20)):
        out += sc.step([det(320, y)], i / 10.0)
    (crossing, speed), *_ = out
    assert crossing.direction == "south"
    assert speed is not None and speed.unit == "m/s"
    assert speed.value == pytest.approx(20 * 10 * 0.05, rel=0.01)  # 20 px per 0.1 s at 5 cm/px = 10 m/s


def test_held_tracks_survive_a_still_scene_without_detector_runs() -> None:
    sc = scene(tracker={"max_lost_s": 1.0})
    run(sc, [[det(320, 100)], [det(320, 100)]])
    for i in range(50):  # 5 s without detector runs (motion gate says still)
        sc.step(None, 0.2 + i / 10)
    run(sc, [[det(320, 101)]], t0=5.2)
    assert [t.id for t in sc.tracker.tracks] == [1]
    assert sc.tracker.tracks[0].state == TrackState.CONFIRMED


def test_lost_track_is_removed_after_max_lost_seconds() -> None:
    tracker = ByteTracker(TrackerConfig(max_lost_s=1.0))
    tracker.update([det(100, 100)], 0.0)
    tracker.update([det(100, 100)], 0.1)
    assert tracker.tracks[0].confirmed
    update = tracker.update([], 0.5)
    assert update.tracks[0].state == TrackState.LOST
    update = tracker.update([], 1.2)
    assert [t.id for t in update.removed] == [1] and update.tracks == ()


def test_low_score_detections_do_not_start_tracks() -> None:
    tracker = ByteTracker(TrackerConfig(high_score=0.5, low_score=0.1))
    for i in range(5):
        tracker.update([det(100, 100, score=0.3)], i / 10)
    assert tracker.tracks == ()


def test_track_velocity_follows_real_time_between_frames() -> None:
    tracker = ByteTracker()
    for i, t in enumerate([0.0, 0.5, 1.0, 1.5, 2.0]):
        tracker.update([det(100 + 50 * i, 200)], t)
    vx, vy = tracker.tracks[0].kalman.velocity
    assert vx == pytest.approx(100, rel=0.15) and abs(vy) < 5


def test_line_margins_are_clamped_near_the_edges_only() -> None:
    mid = CountingLine("mid", (0, 240), (640, 240), margin=10).fitted_to(W, H)
    edge = CountingLine("edge", (0, 476), (640, 476), margin=10).fitted_to(W, H)
    assert (mid.margin_in, mid.margin_out) == (10, 10)
    assert edge.margin_in == pytest.approx(2.0) and edge.margin_out == 10


def test_line_counter_rejects_duplicate_names() -> None:
    with pytest.raises(ValueError):
        LineCounter([CountingLine("a", (0, 0), (1, 1)), CountingLine("a", (0, 1), (1, 0))])


def test_many_random_crossings_match_ground_truth() -> None:
    # Vehicles entering at random times in two lanes, random speeds, detector noise and misses.
    rng = np.random.default_rng(7)
    sc = scene(lines=[{"name": "v", "points": [[320, 0], [320, 480]]}], anchor="centre")
    cars = []
    for k in range(30):
        eastbound = bool(k % 2)
        cars.append(
            {
                "start": rng.uniform(0, 40),
                "speed": rng.uniform(60, 200) * (1 if eastbound else -1),
                "x0": -40 if eastbound else 680,
                "y": 150 if eastbound else 330,
            }
        )
    expected = {"in": 0, "out": 0}
    for car in cars:
        expected["out" if car["speed"] > 0 else "in"] += 1
    t, fps = 0.0, 5.0
    while t < 60:
        dets = []
        for car in cars:
            x = car["x0"] + car["speed"] * (t - car["start"])
            if t < car["start"] or not (-30 < x < 670) or rng.random() < 0.1:
                continue
            dets.append(det(x + rng.normal(0, 2), car["y"] + rng.normal(0, 2), score=float(rng.uniform(0.55, 0.95))))
        sc.step(dets, t)
        t += 1 / fps
    got = totals(sc)["v"]["car"]
    assert got == expected
