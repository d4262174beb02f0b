//! Checks that the npm assets the binary embeds are installed, with a clear message when not.

use std::path::Path;

const NPM_ASSETS: &[&str] = &[
    "node_modules/htmx.org/dist/htmx.min.js",
    "node_modules/uplot/dist/uPlot.iife.min.js",
    "node_modules/uplot/dist/uPlot.min.css",
];

fn main() {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    for asset in NPM_ASSETS {
        let path = Path::new(&manifest_dir).join(asset);
        println!("cargo:rerun-if-changed={}", path.display());
        if !path.exists() {
            panic!(
                "{} is missing: run `npm ci --prefix ui` (scripts/setup.sh does it) before building pgmon",
                path.display()
            );
        }
    }
}
