# Read by `make install` when pip builds llama-cpp-python (the `llama` extra) from source: CMake runs this
# file right after llama.cpp's project() call (CMAKE_PROJECT_llama.cpp_INCLUDE in the Makefile).
# llama-cpp-python forces LLAMA_BUILD_COMMON on, which compiles llama.cpp's `common` library (argument
# parsing, chat-template parsers, an HTTP client with TLS): about 40% of the build, for a library that the
# Python package never loads. Its setting comes before this point, so here it can be turned off again.
set(LLAMA_BUILD_COMMON OFF CACHE BOOL "llama.cpp: build common utils library" FORCE)
