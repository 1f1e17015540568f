# node-gyp build of the addon (prebuildify and the install fallback use it). The source lists
# come from native/sources.json, which CMakeLists.txt reads too.
{
  "variables": {
    "st_common_cflags": ["-O3", "-fvisibility=hidden", "-fPIC", "-Wall", "-Wno-unused-parameter"]
  },
  "targets": [
    {
      # SIMD code in its own translation units, compiled for AVX2 + FMA + F16C and only ever
      # called after the run-time check in cpu.cc (like Node's own base64_avx2 target).
      "target_name": "switch_kernels_avx2",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./native/sources.json').kernels_avx2.join(' ')\")"],
      "cflags_cc": ["<@(st_common_cflags)", "-std=c++17", "-mavx2", "-mfma", "-mf16c"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"]
    },
    {
      # AVX-512 code (F, VL, BW, DQ on top of the AVX2 set), called only when cpu.cc found the
      # CPU and the OS ready for it (active_isa() >= avx512).
      "target_name": "switch_kernels_avx512",
      "type": "static_library",
      "sources": ["<!@(node -p \"require('./native/sources.json').kernels_avx512.join(' ')\")"],
      "cflags_cc": ["<@(st_common_cflags)", "-std=c++17", "-mavx2", "-mfma", "-mf16c",
                    "-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"]
    },
    {
      "target_name": "switch_transformer",
      "sources": [
        "<!@(node -p \"require('./native/sources.json').kernels.join(' ')\")",
        "<!@(node -p \"require('./native/sources.json').mesh.join(' ')\")",
        "<!@(node -p \"require('./native/sources.json').addon.join(' ')\")"
      ],
      "dependencies": [
        "switch_kernels_avx2",
        "switch_kernels_avx512",
        "<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"
      ],
      # _ALL: a C++ exception other than Napi::Error (std::bad_alloc from a huge request) becomes a
      # JavaScript Error instead of terminating the process.
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags_cc": ["<@(st_common_cflags)", "-std=c++17"],
      "cflags_cc!": ["-std=gnu++17"],
      "libraries": ["-lpthread", "-ldl"]
    }
  ]
}
