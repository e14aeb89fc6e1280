{
  "targets": [
    {
      "target_name": "sluice_sockopt",
      "sources": ["src/sluice_sockopt.c", "src/data_scan.c"],
      "cflags": ["-std=gnu11", "-Wall", "-Wextra", "-O2"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"]
    }
  ]
}
