"""Procedural synthetic person re-ID data: our open, editable GSPR / mini-GSPR.

    from smcr.synth import generate, generate_in_memory
    root = generate("market-like", "data/market_like", num_ids=300, seed=0)
    data = generate_in_memory("mini-gspr", num_ids=20, seed=0, image_size=(128, 64))

Presets: ``gspr``, ``mini-gspr``, ``market-like`` (summer campus), ``duke-like`` (winter
campus); see :mod:`smcr.synth.presets`.
"""

from .generator import (
    ImageJob,
    SynthData,
    SynthError,
    World,
    build_world,
    generate,
    generate_in_memory,
    plan_jobs,
    render_job,
    sample_spec,
)
from .labeler import ManifestError, image_name, parse_image_name, read_manifest
from .person import ClothingStyle, PersonModel, build_body, make_twin, sample_person
from .presets import (
    PRESETS,
    CameraRange,
    PresetError,
    StyleRange,
    SynthPreset,
    get_preset,
    load_preset,
    preset_names,
)
from .preview import write_preview
from .render import ImageSpec, Occluder, RenderResult, render_image

__all__ = [
    "PRESETS",
    "CameraRange",
    "ClothingStyle",
    "ImageJob",
    "ImageSpec",
    "ManifestError",
    "Occluder",
    "PersonModel",
    "PresetError",
    "RenderResult",
    "StyleRange",
    "SynthData",
    "SynthError",
    "SynthPreset",
    "World",
    "build_body",
    "build_world",
    "generate",
    "generate_in_memory",
    "get_preset",
    "image_name",
    "load_preset",
    "make_twin",
    "parse_image_name",
    "plan_jobs",
    "preset_names",
    "read_manifest",
    "render_image",
    "render_job",
    "sample_person",
    "sample_spec",
    "write_preview",
]
