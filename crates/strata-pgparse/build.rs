//! Compiles the vendored libpg_query (PostgreSQL's parser as a library) into a static library,
//! as its own Makefile does: every source under src/ and src/postgres/, and the upb runtime
//! and xxhash it links with. No bindgen: `src/ffi.rs` declares the two functions used.

use std::path::Path;

fn main() {
    let root = Path::new("libpg_query");
    println!("cargo:rerun-if-changed=libpg_query");
    let mut build = cc::Build::new();
    for dir in ["src", "src/postgres"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(dir))
            .expect("libpg_query sources")
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "c"))
            .collect();
        files.sort();
        build.files(files);
    }
    build
        .file(root.join("vendor/xxhash/xxhash.c"))
        .file(root.join("vendor/upb/upb.c"))
        .file(root.join("vendor/upb/third_party/utf8_range/utf8_range.c"))
        .file(root.join("protobuf/pg_query.upb_minitable.c"))
        .include(root)
        .include(root.join("vendor"))
        .include(root.join("vendor/upb"))
        .include(root.join("vendor/upb/third_party/utf8_range"))
        .include(root.join("src/postgres/include"))
        .include(root.join("src/include"))
        // as libpg_query's own CFLAGS: upb needs them
        .flag("-fno-strict-aliasing")
        .flag("-fwrapv")
        .warnings(false)
        .compile("pg_query");
}
