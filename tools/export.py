"""Export a model to ONNX, checked against PyTorch: python tools/export.py (--cfg CONFIG [--checkpoint FILE] | --model
NAME) --out model.onnx [--opset N] [--batch-size B]"""
import sys

from vmb.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
