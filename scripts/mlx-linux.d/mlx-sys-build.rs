//! soakd's Linux (CPU) build script for mlx-sys 0.7, written by soakd (not upstream code). It replaces
//! the published build.rs in a patched copy of the crate made by `scripts/mlx-linux`: the published
//! one fetches MLX from GitHub with cmake and links Apple-only libraries (c++, objc, Foundation).
//! This one builds only the vendored mlx-c (`src/mlx-c`, shipped in the crate) against the prebuilt
//! MLX of PyPI's `mlx-cpu` wheel (`SOAKD_MLX_WHEEL` = the wheel's `mlx/` folder) and links libstdc++.

use std::{env, path::PathBuf};

#[allow(dead_code)]
#[path = "src/bindgen_config.rs"]
mod bindgen_config;

fn main() {
    println!("cargo:rerun-if-env-changed=SOAKD_MLX_WHEEL");
    let wheel = PathBuf::from(env::var("SOAKD_MLX_WHEEL").expect("SOAKD_MLX_WHEEL: run through scripts/mlx-linux"));
    let mlx_c_root = PathBuf::from("src/mlx-c");

    let dst = cmake::Config::new(&mlx_c_root)
        .define("MLX_C_USE_SYSTEM_MLX", "ON")
        .define("MLX_DIR", wheel.join("share/cmake/MLX"))
        .define("MLX_C_BUILD_EXAMPLES", "OFF")
        .define("BUILD_SHARED_LIBS", "OFF")
        .profile("Release")
        .build();

    println!("cargo:rustc-link-search=native={}", dst.join("lib").display());
    println!("cargo:rustc-link-lib=static=mlxc");
    println!("cargo:rustc-link-search=native={}", wheel.join("lib").display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    println!("cargo:rustc-link-lib=dylib=stdc++");
    println!("cargo:rustc-link-lib=dylib=pthread");
    println!("cargo:rustc-link-lib=dylib=dl");

    let headers = bindgen_config::discover_headers(&mlx_c_root).expect("mlx-c headers");
    for header in &headers {
        println!("cargo:rerun-if-changed={}", header.display());
    }
    let bindings = bindgen_config::builder(&mlx_c_root, &headers)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()))
        .generate()
        .expect("Unable to generate bindings");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    bindings.write_to_file(out.join("bindings.rs")).expect("write bindings.rs");
}
