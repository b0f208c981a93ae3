"""Plan benchmark (issue 4): `ltx-reconcile plan` over 1,000 / 10,000 / 100,000 images.

For each size the script writes a spec tree (several files in several folders, realistic
prompts, defaults in half of the files, a 2x2 grid and a reference in most files) and a
state that matches it, then times whole `ltx-reconcile -C DIR plan` processes, interpreter
start included, each in a fresh child with its output sent to /dev/null:

    cold      no state and no parse cache (a fresh --state path per run): every image is new
    warm      the state matches and the parse cache is warm: "No changes"
    warm 1%   1% of the images changed (every 10th image of the first tenth of the files
              gets a new prompt; a new wording each run, so those files miss the cache)

Each figure is the median of the runs: wall time (what the targets are about), the child's
CPU time (user + system: when it is well below the wall time, the machine was busy) and its
peak RSS as /usr/bin/time reports it (see `timed` for why not ru_maxrss). The start-up of
`ltx-reconcile --version` is measured too, so that the cost per image can be shown above it.

The matching state is the product's own rows: StateStore.open creates the file, each image's
key is computed by `keys.image_key` from the images `load_specs` resolves (as the planner
computes it), the rows are encoded by `state.codec` (as put_image / put_artifact encode them)
and inserted in one transaction, and each image gets an object file in the artifact store
(the planner stats each one). The script then checks that the warm plan says "No changes"
(`plan --json`: every image no-op) and that the 1% plan replaces exactly 1%, and stops with
exit 2 if not.

At 10,000 images it also times Terraform on the same inputs: one `terraform_data` block per
image whose input is the image's API fields, a state that matches (written directly, as
ours is; `--terraform-apply` runs `terraform apply` instead, which takes 10+ minutes), then
`terraform plan -refresh=false`: the first plan, and warm ones.

    .venv/bin/python bench/plan_bench.py                       # 1k, 10k, 100k and Terraform
    .venv/bin/python bench/plan_bench.py --quick --no-terraform
    .venv/bin/python bench/plan_bench.py --sizes 10000 --runs 9 --keep

Exit status: 2 when a check fails (the figures would be meaningless), 1 when a target is
missed, 0 otherwise. Run it with the project's virtualenv Python.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from ltx_reconcile.artifacts import ArtifactStore
from ltx_reconcile.keys import image_key
from ltx_reconcile.plan.planner import inputs_view
from ltx_reconcile.spec.image import ImageSpec
from ltx_reconcile.spec.loader import load_specs
from ltx_reconcile.state.codec import artifact_to_row, image_to_row
from ltx_reconcile.state.records import ArtifactRecord, ImageRecord
from ltx_reconcile.state.store import StateStore

DEFAULT_SIZES: Final = (1_000, 10_000, 100_000)
QUICK_SIZES: Final = (1_000, 10_000)
IMAGES_PER_FILE: Final = 1_000
MIN_FILES: Final = 4
GRID_MIN_FILE: Final = 50
"""A file with at least this many images holds one 2x2 grid and one reference."""
TERRAFORM_SIZE: Final = 10_000
EXIT_OK: Final = 0
EXIT_CHANGES: Final = 2
"""`plan --detailed-exitcode` (ours and Terraform's): 0 no changes, 2 changes."""

WARM_10K_GOAL_S: Final = 0.5
COLD_10K_GOAL_S: Final = 1.5
WARM_100K_GOAL_S: Final = 5.0
WARM_100K_GOAL_MB: Final = 400.0
LINEAR_TOLERANCE: Final = 1.5
"""Linear: the marginal time per image at the largest size is at most this times the next."""
TF_WARM_GOAL: Final = 25.0
TF_COLD_GOAL: Final = 8.0

CREATED_AT: Final = 1_700_000_000.0
EMAIL: Final = "bench@example.com"
PRICES: Final = {"flux": 28, "flux-premium": 28, "nano-banana": 49}

AREAS: Final = ("characters", "scenes", "props", "key-art")
SUBJECTS: Final = (
    "A young knight in silver armour",
    "An old fisherman with a weathered face",
    "A red fox with a bushy tail",
    "A clockwork owl with brass feathers",
    "A street vendor selling paper lanterns",
    "A lighthouse keeper in a yellow raincoat",
    "A girl flying a patched kite",
    "A caravan of camels",
    "A tiny dragon curled around a teacup",
    "A botanist sketching rare orchids",
    "A retired sea captain with a pipe",
    "A pair of ravens on a fence post",
    "A blacksmith hammering a glowing blade",
    "A monk sweeping temple steps",
    "A cyclist in a neon jacket",
    "A wooden sailing ship",
)
ACTIONS: Final = (
    "standing in",
    "walking through",
    "resting beside",
    "looking out over",
    "hiding in",
    "crossing",
    "waiting at",
    "dancing in",
)
PLACES: Final = (
    "a misty pine forest",
    "a crowded night market",
    "the ruins of a marble temple",
    "a snowy mountain pass",
    "a sunlit wheat field",
    "a flooded subway station",
    "a quiet harbour at dawn",
    "a desert canyon",
    "a library with towering shelves",
    "a rooftop garden above the city",
)
DETAILS: Final = (
    "golden hour light",
    "soft fog",
    "rain on cobblestones",
    "dramatic clouds",
    "35mm film grain",
    "shallow depth of field",
    "highly detailed",
    "muted colour palette",
    "long shadows",
    "warm lantern glow",
    "cold blue tones",
    "painterly brush strokes",
)
LOCATIONS: Final = ("harbour town", "mountain kingdom", "old quarter", "northern coast")
WEATHERS: Final = ("light drizzle", "clear skies", "heavy snow", "summer haze")
LIGHTINGS: Final = ("soft rim light", "hard noon sun", "candlelight", "overcast daylight")
SHOT_TYPES: Final = ("close-up", "medium shot", "wide shot", "extreme wide shot")
SHOT_ANGLES: Final = ("eye-level", "low-angle", "over-the-shoulder", "overhead", "birds-eye-view")
STYLES: Final = ("cinematic", "vintage", "dreamy", "hand_drawn", "film_noir", "anime")
TAGS: Final = ("character", "crowd", "scene", "prop", "ui", "hero", "background")
MODELS: Final = ("flux", "flux", "flux", "flux-premium", "nano-banana")
ASPECTS: Final = ("16:9", "9:16", "1:1")


class BenchError(Exception):
    """A check failed: the benchmark's figures would not mean what they say."""


# -- the spec tree -------------------------------------------------------------------------


@dataclass(slots=True)
class Entry:
    """One entry of a spec file's `images`: a plain image, or a grid already rendered."""

    name: str
    prompt: str
    rest: str
    """Every line after the prompt, already rendered."""
    changeable: bool
    """A plain image nothing references: changing it changes exactly one image."""
    block: str | None = None
    """The whole rendered entry, for grids."""

    def render(self, suffix: str = "") -> str:
        if self.block is not None:
            return self.block
        return f"  {self.name}:\n    prompt: {self.prompt}{suffix}\n{self.rest}"


@dataclass(slots=True)
class SpecFile:
    relative: str
    header: str
    entries: list[Entry] = field(default_factory=list)

    def render(self, changed: Mapping[str, str] | None = None) -> str:
        changed = changed or {}
        body = "".join(entry.render(changed.get(entry.name, "")) for entry in self.entries)
        return f"{self.header}images:\n{body}"


@dataclass(slots=True)
class Tree:
    size: int
    files: list[SpecFile]
    changed: list[str]
    """The images the 1% runs change."""

    def changed_files(self) -> list[SpecFile]:
        names = set(self.changed)
        return [f for f in self.files if any(e.name in names for e in f.entries)]


def _prompt(rng: random.Random) -> str:
    details = ", ".join(rng.sample(DETAILS, rng.choice((1, 2, 2, 3))))
    return f"{rng.choice(SUBJECTS)} {rng.choice(ACTIONS)} {rng.choice(PLACES)}, {details}"


def _optional_lines(rng: random.Random, is_flux: bool) -> list[str]:
    lines: list[str] = []
    if rng.random() < 0.9:
        lines.append(f"    seed: {rng.randrange(2**32)}")  # else derived from the name
    if rng.random() < 0.3:
        lines.append(f"    location: {rng.choice(LOCATIONS)}")
    if rng.random() < 0.15:
        lines.append(f"    weather: {rng.choice(WEATHERS)}")
    if rng.random() < 0.4:
        lines.append(f"    shot_type: {rng.choice(SHOT_TYPES)}")
    if rng.random() < 0.2:
        lines.append(f"    shot_angle: {rng.choice(SHOT_ANGLES)}")
    if is_flux and rng.random() < 0.3:
        lines.append(f"    style: {rng.choice(STYLES)}")
    if rng.random() < 0.5:
        lines.append(f"    tags: [{', '.join(rng.sample(TAGS, 2))}]")
    if rng.random() < 0.05:
        lines.append("    description: Background extra; regenerate freely.")
    return lines


def _grid_entry(name: str, rng: random.Random, is_flux: bool) -> Entry:
    model = "" if is_flux else "    model: flux\n"  # grids here always use flux's styles
    block = (
        f"  {name}:\n"
        f"    prompt: {rng.choice(SUBJECTS)} with a {{mood}} expression, {rng.choice(PLACES)}\n"
        f"{model}"
        f"    style: {rng.choice(STYLES)}\n"
        "    grid:\n"
        f"      seed: [{rng.randrange(10_000)}, {10_000 + rng.randrange(10_000)}]\n"
        "      mood: [calm, fierce]\n"
        f"    output: out/{name}/{{mood}}-{{seed}}.png\n"
        "    tags: [character]\n"
    )
    return Entry(name, "", "", changeable=False, block=block)


def _spec_file(index: int, count: int, rng: random.Random) -> SpecFile:
    area = AREAS[index % len(AREAS)]
    header = "# yaml-language-server: $schema=../../docs/spec.schema.json\n"
    header += f"# Generated by bench/plan_bench.py: {area}, part {index}.\n"
    default_model = "flux"
    if index % 2 == 0:
        default_model = MODELS[index % len(MODELS)]
        aspect = ASPECTS[index % len(ASPECTS)]
        header += (
            "defaults:\n"
            f"  model: {default_model}\n"
            f'  aspect_ratio: "{aspect}"\n'
            f"  lighting: {rng.choice(LIGHTINGS)}\n"
        )
    spec = SpecFile(f"{area}/part-{index:04d}.yaml", header)
    prefix = f"{area[:4]}{index:04d}"
    remaining = count
    anchor: str | None = None
    if count >= GRID_MIN_FILE:
        spec.entries.append(_grid_entry(f"{prefix}-portraits", rng, default_model == "flux"))
        remaining -= 4
    for number in range(remaining):
        name = f"{prefix}-{number:05d}"
        model = default_model
        lines: list[str] = []
        if rng.random() < 0.05:
            model = rng.choice(MODELS)
            lines.append(f"    model: {model}")
        lines.extend(_optional_lines(rng, model == "flux"))
        is_reference = anchor is None and count >= GRID_MIN_FILE and model == "flux"
        if anchor is not None and model == "flux" and number == remaining - 1:
            lines.append(f"    reference: {anchor}")
            lines.append("    reference_strength: 65")
        rest = "".join(line + "\n" for line in lines)
        spec.entries.append(Entry(name, _prompt(rng), rest, changeable=not is_reference))
        if is_reference:
            anchor = name
    return spec


def build_tree(size: int) -> Tree:
    """The spec tree of `size` images, deterministic for a given size."""
    rng = random.Random(size)  # reproducible test data, not secrets
    file_count = max(MIN_FILES, math.ceil(size / IMAGES_PER_FILE))
    base, extra = divmod(size, file_count)
    files = [_spec_file(i, base + (1 if i < extra else 0), rng) for i in range(file_count)]
    # 1% of the images, spread over the first tenth of the files: an edit session.
    wanted = size // 100
    edited = files[: max(1, math.ceil(file_count / 10))]
    candidates = [e.name for f in edited for e in f.entries if e.changeable]
    if len(candidates) < wanted:
        raise BenchError(f"only {len(candidates)} images can change, {wanted} wanted")
    step = len(candidates) // wanted
    return Tree(size, files, candidates[::step][:wanted])


def write_tree(tree: Tree, specs: Path, changed: Mapping[str, str] | None = None) -> None:
    for spec in tree.files:
        path = specs / spec.relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(spec.render(changed), encoding="utf-8")


# -- the matching state ---------------------------------------------------------------------


def _in_reference_order(images: Sequence[ImageSpec]) -> list[ImageSpec]:
    """Referenced images before the images that reference them (chains of one here)."""
    plain = [i for i in images if i.inputs.reference is None]
    referencing = [i for i in images if i.inputs.reference is not None]
    return plain + referencing


def write_state(root: Path) -> int:
    """A state in which every image of root/specs is present; returns the image count.

    StateStore.open creates the file and its schema; the rows are the product's own
    encoding (state.codec, what put_image and put_artifact insert), written with one
    executemany per table in one transaction, because put_* through sqlite-utils cost
    about 1 ms per image here (three minutes for 100,000). The warm plan's "No changes"
    check then proves that the state matches the specs.
    """
    loaded = load_specs(root / "specs", root=root)
    objects = ArtifactStore(root / "state" / "objects")
    artifacts: list[ArtifactRecord] = []
    images: list[ImageRecord] = []
    digests: dict[str, str] = {}
    made: set[Path] = set()
    for image in _in_reference_order(loaded.images):
        artifact, record = _records(image, digests)
        digests[image.name] = artifact.digest
        path = objects.path_for(artifact.digest)
        if path.parent not in made:
            path.parent.mkdir(parents=True, exist_ok=True)
            made.add(path.parent)
        path.write_bytes(_artifact_bytes(artifact.key))
        artifacts.append(artifact)
        images.append(record)
    state = root / "state" / "state.db"
    StateStore.open(state).close()
    conn = sqlite3.connect(state, isolation_level=None)
    try:
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("BEGIN IMMEDIATE")
        _insert(conn, "artifacts", [artifact_to_row(a) for a in artifacts])
        _insert(conn, "images", [image_to_row(i) for i in images])
        conn.execute("UPDATE meta SET serial = serial + 1")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return len(images)


def _insert(conn: sqlite3.Connection, table: str, rows: list[dict[str, object]]) -> None:
    columns = list(rows[0])
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - our own table and columns
        f"VALUES ({', '.join('?' * len(columns))})"
    )
    conn.executemany(sql, ([row[column] for column in columns] for row in rows))


def _artifact_bytes(key: str) -> bytes:
    return f"ltx-reconcile plan bench artifact for {key}\n".encode()


def _records(image: ImageSpec, digests: Mapping[str, str]) -> tuple[ArtifactRecord, ImageRecord]:
    """The artifact and image rows of a generated image, keyed as the planner keys it."""
    reference = image.inputs.reference
    reference_digest = None
    if reference is not None:
        if reference.image is None:
            raise BenchError("the generated specs have no file references")
        reference_digest = digests[reference.image]
    key = image_key(image.inputs, reference_digest)
    data = _artifact_bytes(key)
    digest = hashlib.sha256(data).hexdigest()
    model = image.inputs.model.value
    artifact = ArtifactRecord(
        digest=digest,
        key=key,
        size=len(data),
        mime="image/png",
        width=1024,
        height=1024,
        job_id=f"email:{EMAIL}-job:{digest[:16]}-type:image",
        model=model,
        email=EMAIL,
        cost=float(PRICES[model]),
        created_at=CREATED_AT,
        source="generated",
        request=dict(image.inputs.api_fields()),
    )
    record = ImageRecord(
        name=image.name,
        key=key,
        digest=digest,
        output=image.output,
        status="present",
        inputs=inputs_view(image, reference_digest),
        output_stat=None,
        updated_at=CREATED_AT,
    )
    return artifact, record


# -- timing child processes -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Run:
    seconds: float
    """Wall time: what the targets are about."""
    cpu_seconds: float
    """User plus system time of the child: how far a busy machine inflated the wall time."""
    peak_mb: float
    exact_peak: bool = True
    """False when the peak is an upper bound (no /usr/bin/time; see `timed`)."""


@dataclass(frozen=True, slots=True)
class Figure:
    runs: tuple[Run, ...]

    @property
    def seconds(self) -> float:
        return statistics.median(r.seconds for r in self.runs)

    @property
    def cpu_seconds(self) -> float:
        return statistics.median(r.cpu_seconds for r in self.runs)

    @property
    def peak_mb(self) -> float:
        return statistics.median(r.peak_mb for r in self.runs)

    def describe(self) -> str:
        runs = ", ".join(f"{r.seconds:.3f}" for r in self.runs)
        bound = "" if all(r.exact_peak for r in self.runs) else "<="
        return (
            f"{self.seconds:7.3f} s (cpu {self.cpu_seconds:6.3f} s)  peak {bound}"
            f"{self.peak_mb:6.1f} MB (max {self.max_peak_mb:.1f})  [{len(self.runs)} runs: {runs}]"
        )

    @property
    def max_peak_mb(self) -> float:
        return max(r.peak_mb for r in self.runs)


GNU_TIME: Final = Path("/usr/bin/time")


def timed(
    argv: Sequence[str],
    *,
    expect: int,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> Run:
    """Run `argv` in a fresh child, stdout to /dev/null; its wall time, CPU and peak RSS.

    The peak comes from /usr/bin/time when it is there. A child's own ru_maxrss is no good
    from this script: Linux counts the RSS a child had between fork and exec, and a child
    forked from this script (which holds a spec tree of 100,000 images) starts out as big
    as it is. Without /usr/bin/time the peak is such an upper bound, and is marked `<=`.
    """
    with tempfile.TemporaryDirectory() as scratch:
        peak_file = Path(scratch) / "peak"
        wrapped = list(argv)
        if GNU_TIME.exists():
            wrapped = [str(GNU_TIME), "-f", "%M", "-o", str(peak_file), *argv]
        errors = Path(scratch) / "stderr"
        with errors.open("wb") as stderr:
            start = time.perf_counter()
            child = subprocess.Popen(
                wrapped, stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd, env=env
            )
            # wait4, not wait: the rusage of this child (and what it waited for) alone.
            _pid, status, usage = os.wait4(child.pid, 0)
            seconds = time.perf_counter() - start
        child.returncode = os.waitstatus_to_exitcode(status)
        if child.returncode != expect:
            text = errors.read_text(errors="replace")[-4000:]
            raise BenchError(
                f"{' '.join(argv)} exited {child.returncode}, expected {expect}:\n{text}"
            )
        if peak_file.exists():  # "Command exited with non-zero status N" may come first
            peak_kib, exact = int(peak_file.read_text().split()[-1]), True
        else:
            peak_kib, exact = usage.ru_maxrss, False
    return Run(seconds, usage.ru_utime + usage.ru_stime, peak_kib / 1024, exact)


def child_env(work: Path) -> dict[str, str]:
    """Our children's environment: bytecode cached, as in any installed copy.

    A machine with PYTHONDONTWRITEBYTECODE=1 would otherwise recompile every module of the
    package on every run. The cache goes under the work directory, not into the project.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    return env


def measure(runs: int, once: Callable[[int], Run]) -> Figure:
    return Figure(tuple(once(index) for index in range(runs)))


def capture(
    argv: Sequence[str],
    *,
    expect: int,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env, check=False)
    if result.returncode != expect:
        raise BenchError(
            f"{' '.join(argv)} exited {result.returncode}, expected {expect}:\n"
            f"{result.stderr[-4000:]}"
        )
    return result.stdout


def ltx_reconcile() -> str:
    # Beside this interpreter (not resolved: a venv's python is a symlink out of the venv).
    script = Path(sys.executable).parent / "ltx-reconcile"
    if script.exists():
        return str(script)
    found = shutil.which("ltx-reconcile")
    if found is None:
        raise BenchError("ltx-reconcile is not installed beside this Python nor on PATH")
    return found


@dataclass(frozen=True, slots=True)
class Ltx:
    """How to start `ltx-reconcile`: the script and the environment of its children."""

    tool: str
    env: Mapping[str, str]

    def plan_argv(self, root: Path, *extra: str) -> list[str]:
        return [self.tool, "-C", str(root), "plan", "--detailed-exitcode", *extra]

    def timed(self, argv: Sequence[str], expect: int) -> Run:
        return timed(argv, expect=expect, env=self.env)

    def summary(self, root: Path, expect: int) -> dict[str, int]:
        """The plan's action counts (`plan --json`), zero counts left out."""
        text = capture(self.plan_argv(root, "--json"), expect=expect, env=self.env)
        summary: dict[str, int] = json.loads(text)["summary"]
        return {action: count for action, count in summary.items() if count}


# -- one size -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SizeResult:
    size: int
    cold: Figure
    warm: Figure
    edited: Figure


def bench_size(
    size: int, runs: int, work: Path, ltx: Ltx, startup: float, *, prime: bool
) -> SizeResult:
    root = work / f"ws-{size}"
    specs = root / "specs"
    started = time.perf_counter()
    tree = build_tree(size)
    write_tree(tree, specs)
    generated = time.perf_counter()
    count = write_state(root)
    if count != size:
        raise BenchError(f"the specs of {size} resolve to {count} images")
    setup = time.perf_counter()
    print(
        f"\n{size:,} images in {len(tree.files)} files: specs written in "
        f"{generated - started:.1f} s, state in {setup - generated:.1f} s (setup, not timed)"
    )

    def cold(index: int) -> Run:
        state = root / f"cold-{index}" / "state.db"  # no state, no parse cache
        return ltx.timed(ltx.plan_argv(root, "--state", str(state)), EXIT_CHANGES)

    if prime:
        cold(runs)  # unmeasured: fills the bytecode cache of the parser's modules
    cold_figure = measure(runs, cold)
    # Unmeasured: warms the parse cache, and proves the state matches the specs.
    summary = ltx.summary(root, EXIT_OK)
    if summary != {"no-op": size}:
        raise BenchError(f"the warm plan of {size} images is not 'No changes': {summary}")
    warm_figure = measure(runs, lambda _index: ltx.timed(ltx.plan_argv(root), EXIT_OK))
    edited_figure = _bench_edited(tree, root, runs, ltx)
    result = SizeResult(size, cold_figure, warm_figure, edited_figure)
    _print_size(result, startup)
    return result


def _bench_edited(tree: Tree, root: Path, runs: int, ltx: Ltx) -> Figure:
    specs = root / "specs"
    files = tree.changed_files()

    def edit(wording: str) -> None:
        changed = dict.fromkeys(tree.changed, f", {wording}")
        for spec in files:
            (specs / spec.relative).write_text(spec.render(changed), encoding="utf-8")

    edit("seen from far away")  # unmeasured check: exactly the 1% are replaced
    expected = {"replace": len(tree.changed), "no-op": tree.size - len(tree.changed)}
    summary = ltx.summary(root, EXIT_CHANGES)
    if summary != expected:
        raise BenchError(f"the 1% plan of {tree.size} images is {summary}, not {expected}")

    def once(index: int) -> Run:
        edit(f"variant {index}")  # new bytes each run: those files miss the parse cache
        return ltx.timed(ltx.plan_argv(root), EXIT_CHANGES)

    figure = measure(runs, once)
    write_tree(tree, specs)
    return figure


def _print_size(result: SizeResult, startup: float) -> None:
    for label, figure in (
        ("cold", result.cold),
        ("warm no-op", result.warm),
        ("warm 1% changed", result.edited),
    ):
        per_image = figure.seconds / result.size * 1e6
        marginal = max(figure.seconds - startup, 0.0) / result.size * 1e6
        print(f"  {label:<16} {figure.describe()}")
        print(f"  {'':<16} {per_image:7.1f} us/image; {marginal:.1f} us/image above start-up")


# -- Terraform ------------------------------------------------------------------------------


def _hcl_string(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("${", "$${").replace("%{", "%%{") + '"'


def _hcl_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return _hcl_string(str(value))


TerraformInputs = list[tuple[str, dict[str, str | int]]]
"""(resource name, input) for each image."""


def write_terraform(root: Path, directory: Path) -> TerraformInputs:
    """main.tf: one terraform_data block per image, its input the image's API fields.

    Literal blocks, not `for_each` over one map: Terraform evaluates the for_each map for
    every instance, which made 1,000 images take 15 s to plan and 10,000 out of reach.
    """
    loaded = load_specs(root / "specs", root=root)
    resources: TerraformInputs = []
    blocks: list[str] = []
    for index, image in enumerate(loaded.images):
        name = f"image_{index:06d}"
        fields = image.inputs.api_fields()
        resources.append((name, fields))
        body = "".join(f"    {field} = {_hcl_value(value)}\n" for field, value in fields.items())
        blocks.append(
            f'resource "terraform_data" "{name}" {{\n  # {image.name}\n  input = {{\n{body}  }}\n}}\n'
        )
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "main.tf").write_text("\n".join(blocks), encoding="utf-8")
    return resources


def write_terraform_state(directory: Path, resources: TerraformInputs, version: str) -> None:
    """terraform.tfstate as `terraform apply` writes it for these resources (format 4).

    Applying 10,000 terraform_data takes Terraform over ten minutes here (1,000 took a
    minute), so by default the state is written directly, the way this script writes ours;
    the first `plan -detailed-exitcode` must then report no changes, or the script stops.
    """

    def typed(fields: dict[str, str | int]) -> dict[str, object]:
        types = {k: "number" if isinstance(v, int) else "string" for k, v in fields.items()}
        return {
            "value": dict(sorted(fields.items())),
            "type": ["object", dict(sorted(types.items()))],
        }

    state = {
        "version": 4,
        "terraform_version": version,
        "serial": 1,
        "lineage": str(uuid.uuid4()),
        "outputs": {},
        "resources": [
            {
                "mode": "managed",
                "type": "terraform_data",
                "name": name,
                "provider": 'provider["terraform.io/builtin/terraform"]',
                "instances": [
                    {
                        "schema_version": 0,
                        "attributes": {
                            "id": str(uuid.uuid4()),
                            "input": typed(fields),
                            "output": typed(fields),
                            "triggers_replace": None,
                        },
                        "sensitive_attributes": [],
                    }
                ],
            }
            for name, fields in resources
        ],
        "check_results": None,
    }
    (directory / "terraform.tfstate").write_text(json.dumps(state, indent=2), encoding="utf-8")


@dataclass(frozen=True, slots=True)
class TerraformResult:
    first: Run
    warm: Figure


def bench_terraform(root: Path, work: Path, runs: int, *, apply: bool) -> TerraformResult | None:
    terraform = shutil.which("terraform")
    if terraform is None:
        print("\nTerraform: skipped, `terraform` is not on PATH.")
        return None
    directory = work / "terraform"
    resources = write_terraform(root, directory)
    rc = work / "terraformrc"
    rc.write_text("", encoding="utf-8")
    env = {
        **os.environ,
        "TF_IN_AUTOMATION": "1",
        "CHECKPOINT_DISABLE": "1",
        "TF_CLI_CONFIG_FILE": str(rc),
    }
    common = ["-input=false", "-no-color"]
    started = time.perf_counter()
    capture([terraform, "init", *common], expect=0, cwd=directory, env=env)
    if apply:
        capture([terraform, "apply", "-auto-approve", *common], expect=0, cwd=directory, env=env)
        how = "init and apply"
    else:
        version = json.loads(capture([terraform, "version", "-json"], expect=0, env=env))
        write_terraform_state(directory, resources, version["terraform_version"])
        how = "init and a state written directly"
    print(
        f"\nTerraform {len(resources):,} terraform_data (one literal block each, "
        f"{shutil.which('terraform')}): {how} in {time.perf_counter() - started:.1f} s "
        "(setup, not timed)"
    )
    # -detailed-exitcode 0: no changes, so the state matches the configuration.
    argv = [terraform, "plan", "-refresh=false", "-detailed-exitcode", *common]
    first = timed(argv, expect=EXIT_OK, cwd=directory, env=env)
    warm = measure(runs, lambda _index: timed(argv, expect=EXIT_OK, cwd=directory, env=env))
    print(f"  {'first plan':<16} {Figure((first,)).describe()}")
    print(f"  {'warm plan':<16} {warm.describe()}")
    return TerraformResult(first, warm)


# -- targets --------------------------------------------------------------------------------


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def report_targets(
    results: Mapping[int, SizeResult], startup: float, terraform: TerraformResult | None
) -> bool:
    """Print each target with PASS/MISS; True when every target that was measured passed."""
    print("\nTargets")
    checks: list[bool] = []

    def check(ok: bool, text: str) -> None:
        checks.append(ok)
        print(f"  {_verdict(ok)}  {text}")

    ten = results.get(10_000)
    if ten is not None:
        check(
            ten.warm.seconds <= WARM_10K_GOAL_S,
            f"warm no-op, 10,000 images: {ten.warm.seconds:.3f} s <= {WARM_10K_GOAL_S} s",
        )
        check(
            ten.cold.seconds <= COLD_10K_GOAL_S,
            f"cold, 10,000 images: {ten.cold.seconds:.3f} s <= {COLD_10K_GOAL_S} s",
        )
    hundred = results.get(100_000)
    if hundred is not None:
        check(
            hundred.warm.seconds <= WARM_100K_GOAL_S,
            f"warm no-op, 100,000 images: {hundred.warm.seconds:.3f} s <= {WARM_100K_GOAL_S} s",
        )
        check(
            hundred.warm.peak_mb <= WARM_100K_GOAL_MB,
            f"warm no-op, 100,000 images: peak {hundred.warm.peak_mb:.1f} MB <= {WARM_100K_GOAL_MB:.0f} MB",
        )
    _check_linear(results, startup, check)
    if terraform is not None and ten is not None:
        warm_ratio = terraform.warm.seconds / ten.warm.seconds
        cold_ratio = terraform.first.seconds / ten.cold.seconds
        check(
            warm_ratio >= TF_WARM_GOAL,
            f"warm vs terraform plan, 10,000: {warm_ratio:.1f}x faster (>= {TF_WARM_GOAL:.0f}x)",
        )
        check(
            cold_ratio >= TF_COLD_GOAL,
            f"cold vs terraform's first plan, 10,000: {cold_ratio:.1f}x faster (>= {TF_COLD_GOAL:.0f}x)",
        )
    return all(checks)


def _check_linear(
    results: Mapping[int, SizeResult], startup: float, check: Callable[[bool, str], None]
) -> None:
    sizes = sorted(results)
    if len(sizes) < 2:
        print("  ----  linear cost: needs two sizes")
        return
    small, large = results[sizes[-2]], results[sizes[-1]]
    for label, pick in (("cold", _cold), ("warm no-op", _warm), ("warm 1%", _edited)):
        per_small = (pick(small).seconds - startup) / small.size * 1e6
        per_large = (pick(large).seconds - startup) / large.size * 1e6
        ok = per_large <= LINEAR_TOLERANCE * per_small
        check(
            ok,
            f"linear, {label}: {per_large:.1f} us/image at {large.size:,} vs {per_small:.1f} "
            f"at {small.size:,} above start-up (<= {LINEAR_TOLERANCE}x)",
        )


def _cold(result: SizeResult) -> Figure:
    return result.cold


def _warm(result: SizeResult) -> Figure:
    return result.warm


def _edited(result: SizeResult) -> Figure:
    return result.edited


# -- main -----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(part) for part in text.split(",")),
        default=None,
        help="comma-separated image counts [default: 1000,10000,100000]",
    )
    parser.add_argument("--runs", type=int, default=None, help="runs per figure [5; 3 from 100k]")
    parser.add_argument("--quick", action="store_true", help="1000 and 10000 only, 3 runs")
    parser.add_argument("--no-terraform", action="store_true", help="skip the Terraform comparison")
    parser.add_argument(
        "--terraform-apply",
        action="store_true",
        help="build Terraform's state with `terraform apply` (10+ minutes) instead of writing it",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    return parser.parse_args(argv)


def _runs_for(size: int, args: argparse.Namespace) -> int:
    if args.runs is not None:
        return int(args.runs)
    if args.quick:
        return 3
    return 3 if size >= 100_000 else 5


def _startup(ltx: Ltx, runs: int) -> Figure:
    argv = [ltx.tool, "--version"]
    ltx.timed(argv, EXIT_OK)  # unmeasured: fills the bytecode cache
    return measure(runs, lambda _index: ltx.timed(argv, EXIT_OK))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sizes: Iterable[int] = args.sizes or (QUICK_SIZES if args.quick else DEFAULT_SIZES)
    work = Path(tempfile.mkdtemp(prefix="ltx-plan-bench-"))
    try:
        ltx = Ltx(ltx_reconcile(), child_env(work))
        print(
            f"ltx-reconcile plan benchmark: {ltx.tool}, Python {sys.version.split()[0]}, "
            f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
        )
        print(f"work directory {work}; each figure is the median of fresh `plan` processes")
        startup = _startup(ltx, 5)
        print(f"start-up (`ltx-reconcile --version`): {startup.describe()}")
        results: dict[int, SizeResult] = {}
        for index, size in enumerate(sorted(set(sizes))):
            runs = _runs_for(size, args)
            results[size] = bench_size(size, runs, work, ltx, startup.seconds, prime=index == 0)
        terraform = None
        if not args.no_terraform and TERRAFORM_SIZE in results:
            terraform = bench_terraform(
                work / f"ws-{TERRAFORM_SIZE}",
                work,
                args.runs or 3,  # each Terraform plan takes tens of seconds
                apply=args.terraform_apply,
            )
        elif not args.no_terraform:
            print(f"\nTerraform: skipped, it runs at {TERRAFORM_SIZE:,} images, not among --sizes.")
        passed = report_targets(results, startup.seconds, terraform)
    except BenchError as err:
        print(f"\nCHECK FAILED: {err}", file=sys.stderr)
        return 2
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
