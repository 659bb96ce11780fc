#!/bin/sh
echo "SKIP: cpcl was built without CUDA (meson option cuda); the gpu suite needs nvcc and a GPU"
exit 77
