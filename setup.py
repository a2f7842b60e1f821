"""VMB: the Video Model Benchmark."""
from setuptools import find_packages, setup

setup(
    name="vmb",
    version="0.1.0",
    description="Video Model Benchmark: time-to-accuracy for video models (X3D-M, MViT-B) on Kinetics20",
    python_requires=">=3.9",
    # The canonical configs live in the repository's configs/ and are installed inside the package as
    # vmb/configs/ (vmb.rules finds them in either place), so a non-editable install scores runs too.
    packages=[*find_packages(include=["vmb", "vmb.*"]), "vmb.configs"],
    package_dir={"vmb.configs": "configs"},
    package_data={"vmb.scoring": ["rules/*/*.yaml"], "vmb.configs": ["*.yaml", "*/*.yaml"]},
    install_requires=[
        # torch 2.14.1 / torchvision 0.29.1 is the tested pair; pytorchvideo 0.1.5's model builders
        # import with it. Older torch builds may lack torchvision operators, so keep the floor.
        "torch>=2.14.1,<3",
        "torchvision>=0.29.1",
        "pytorchvideo==0.1.5",
        "fvcore>=0.1.5.post20221221",
        "iopath>=0.1.10",
        "av>=18",  # tested with 18; prepare uses VideoFrame.rotation and reformat(threads=)
        "simplejson>=3.19",
        "tensorboard>=2.14",
        "numpy>=1.24",
        "mlperf-logging>=4.1",
        "scipy>=1.10",  # the scorer's convergence t-test (vmb.scoring.convergence)
        "matplotlib>=3.7",
        "tqdm>=4.66",
        "PyYAML>=6.0",
        "nvidia-ml-py>=12.535",  # NVML: GPU energy over the timed run (imported on CUDA only)
        "python-hostlist>=1.23",  # SLURM node lists ("node[01-04]") for a run started by srun (vmb.launch)
    ],
    # One console script per command (vmb/cli/); tools/*.py are aliases of the same functions.
    entry_points={"console_scripts": [
        "vmb-train = vmb.cli.run_net:main",
        "vmb-test = vmb.cli.test_net:main",
        "vmb-score = vmb.cli.score:main",
        "vmb-package = vmb.cli.package:main",
        "vmb-model-info = vmb.cli.model_info:main",
        "vmb-make-synthetic = vmb.cli.make_synthetic:main",
        "vmb-prepare-kinetics20 = vmb.cli.prepare_kinetics20:main",
        "vmb-bench-loader = vmb.cli.bench_loader:main",
        "vmb-bench-train = vmb.cli.bench_train:main",
        "vmb-bench-infer = vmb.cli.bench_infer:main",
        "vmb-system-check = vmb.cli.system_check:main",
        "vmb-results = vmb.cli.results:main",
        "vmb-submit = vmb.cli.submit:main",
        "vmb-export = vmb.cli.export:main",
    ]},
    extras_require={
        # torchcodec loads the system's FFmpeg shared libraries (not PyAV's; see INSTALL.md): its tests need them.
        # import-linter: the layer contracts in .importlinter (tests/test_import_contracts.py); playwright drives
        # Debian's Chromium in the results page's browser test (tools/setup_env.sh installs Chromium as root).
        # The deploy extra's packages too: CI runs the export, runtime and int8 tests.
        "dev": ["pytest>=8", "pytest-timeout>=2.3", "torchcodec>=0.17", "import-linter>=2.0", "submitit>=1.5",
                "playwright>=1.40", "onnx>=1.17", "onnxscript>=0.5", "onnx-ir>=0.1", "onnxruntime>=1.21"],
        # tools/export.py and bench_infer/test_net --runtime onnxruntime (CPU); onnx-ir: the fp16 conversion.
        "deploy": ["onnx>=1.17", "onnxscript>=0.5", "onnx-ir>=0.1", "onnxruntime>=1.21"],
        # The same on a GPU, with TensorRT. onnxruntime and onnxruntime-gpu install one module: never both.
        "deploy-gpu": ["onnx>=1.17", "onnxscript>=0.5", "onnx-ir>=0.1", "onnxruntime-gpu>=1.21", "tensorrt>=10.0"],
        "slurm": ["submitit>=1.5"],  # tools/submit.py: submit a run to SLURM from Python
        # DATA.DECODING_BACKEND values that need more than PyAV (vmb.data.video.BACKENDS).
        "torchcodec": ["torchcodec>=0.17"],
        "torchcodec_cuda": ["torchcodec>=0.17"],  # the PyPI wheel includes NVDEC decoding for torch's CUDA
        "dali": ["nvidia-dali-cuda130>=2.0"],  # fn.decoders.video with per-sample `frames`; on PyPI
    },
)
