"""Runs tests/onnx_models (argv[1]) into a folder (argv[2]) and checks every
model it writes with the ONNX reference checker, shape inference included
(onnx.checker.check_model with full_check). Prints one line per failure and
'N passed, M failed'; exits 1 on any failure or when no model was written."""
import glob
import os
import subprocess
import sys

import onnx


def main():
    gen, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for old in glob.glob(os.path.join(out, "*.onnx")) + glob.glob(os.path.join(out, "*.json")):
        os.remove(old)
    subprocess.run([gen, out], check=True)
    passed = failed = 0
    for path in sorted(glob.glob(os.path.join(out, "*.onnx"))):
        try:
            model = onnx.load(path)
            onnx.checker.check_model(model, full_check=True)
            assert model.opset_import[0].version == 17 and model.ir_version == 8
            passed += 1
        except Exception as e:  # every failure is reported, then counted
            print(f"FAIL {os.path.basename(path)}: {e}")
            failed += 1
    print(f"onnx {onnx.__version__} checker: {passed} passed, {failed} failed")
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
