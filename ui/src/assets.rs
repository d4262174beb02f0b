//! Static assets compiled into the binary, so pages work with no internet access (no CDN).

/// One embedded file, served under `/assets/<name>`.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

macro_rules! embedded {
    ($name:literal, $content_type:literal, $path:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $path)),
        }
    };
}

/// Every asset, by the name pages refer to.
pub static ASSETS: &[Asset] = &[
    embedded!(
        "htmx.min.js",
        "text/javascript; charset=utf-8",
        "node_modules/htmx.org/dist/htmx.min.js"
    ),
    embedded!(
        "uPlot.iife.min.js",
        "text/javascript; charset=utf-8",
        "node_modules/uplot/dist/uPlot.iife.min.js"
    ),
    embedded!("uPlot.min.css", "text/css; charset=utf-8", "node_modules/uplot/dist/uPlot.min.css"),
    embedded!("pgmon.js", "text/javascript; charset=utf-8", "static/pgmon.js"),
    embedded!("pgmon.css", "text/css; charset=utf-8", "static/pgmon.css"),
    embedded!("favicon.svg", "image/svg+xml", "static/favicon.svg"),
];

/// Finds an asset by name.
pub fn find_asset(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_found() {
        for asset in ASSETS {
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.name);
            assert!(find_asset(asset.name).is_some());
        }
        assert!(find_asset("../Cargo.toml").is_none());
    }
}
