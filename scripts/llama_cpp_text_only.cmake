# Included by llama.cpp's project() when scripts/setup.sh compiles llama-cpp-python: the engine serves text models,
# and its Python bindings load libllama and ggml only, so llama.cpp's common library (its tools' and the multimodal
# library's code, two fifths of the compile) is not built. A normal variable here shadows the cached ON that
# llama-cpp-python forces.
set(LLAMA_BUILD_COMMON OFF)
