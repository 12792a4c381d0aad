//! The page's files: built into the binary, or read from `--www DIR` during development.
//!
//! Only names in [`EMBEDDED`] (or plain file names inside `--www DIR`) are ever served, so no
//! request path can reach any other file.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

/// (name, bytes) of every file in `www/`, embedded at build time.
pub const EMBEDDED: &[(&str, &[u8])] = &[
    ("index.html", include_bytes!("../www/index.html")),
    ("app.js", include_bytes!("../www/app.js")),
    ("login.js", include_bytes!("../www/login.js")),
    ("connection.js", include_bytes!("../www/connection.js")),
    ("levels.js", include_bytes!("../www/levels.js")),
    ("monitor.js", include_bytes!("../www/monitor.js")),
    ("report.js", include_bytes!("../www/report.js")),
    ("player.js", include_bytes!("../www/player.js")),
    ("wire.js", include_bytes!("../www/wire.js")),
    ("worklet.js", include_bytes!("../www/worklet.js")),
    ("style.css", include_bytes!("../www/style.css")),
];

pub struct Assets {
    dir: Option<PathBuf>,
}

pub struct Asset {
    pub body: Cow<'static, [u8]>,
    pub content_type: &'static str,
}

impl Assets {
    pub fn new(dir: Option<PathBuf>) -> Assets {
        Assets { dir }
    }

    /// The file for a request path such as `/app.js`; `/` is `index.html`.
    pub fn get(&self, path: &str) -> Option<Asset> {
        let name = match path.strip_prefix('/')? {
            "" => "index.html",
            name => name,
        };
        let body = match &self.dir {
            Some(dir) => Cow::Owned(read_plain_file(dir, name)?),
            None => Cow::Borrowed(EMBEDDED.iter().find(|(n, _)| *n == name)?.1),
        };
        Some(Asset {
            body,
            content_type: content_type(name),
        })
    }
}

/// Reads `dir/name` only when `name` is a plain file name: no separators, no leading dot.
fn read_plain_file(dir: &Path, name: &str) -> Option<Vec<u8>> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if !plain {
        return None;
    }
    std::fs::read(dir.join(name)).ok()
}

pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("wav") => "audio/wav",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_known_names_are_served() {
        let assets = Assets::new(None);
        assert!(assets.get("/").is_some());
        assert_eq!(
            assets.get("/worklet.js").unwrap().content_type,
            "text/javascript; charset=utf-8"
        );
        assert!(assets.get("/../Cargo.toml").is_none());
        assert!(assets.get("/nothing.js").is_none());
        let dev = Assets::new(Some(PathBuf::from(".")));
        assert!(dev.get("/src/main.rs").is_none());
        assert!(dev.get("/..").is_none());
        assert!(dev.get("/.git").is_none());
    }
}
