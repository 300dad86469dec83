//! The dashboard's static files under content-hashed names: a name changes exactly when its
//! bytes do, so browsers may keep each one for a year and never ask again, and a new release's
//! pages name new files. The page shells are written once with those names.

use std::sync::LazyLock;

use sha2::{Digest, Sha256};

const LOGIN_HTML: &str = include_str!("assets/login.html");
const APP_HTML: &str = include_str!("assets/app.html");
const APP_CSS: &str = include_str!("assets/app.css");
const APP_JS: &str = include_str!("assets/app.js");
const FAVICON: &str = include_str!("assets/favicon.svg");

/// Kept for a year and never revalidated: the name is the content's. The script needs a
/// session, so only the browser may keep it (`private`); the style sheet and icon hold no data.
const CACHE_PUBLIC: &str = "public, max-age=31536000, immutable";
const CACHE_PRIVATE: &str = "private, max-age=31536000, immutable";

pub(super) struct Asset {
    /// The URL path, e.g. `/dashboard/assets/app.3f2a9c01d4.css`.
    pub(super) path: String,
    pub(super) body: &'static str,
    pub(super) content_type: &'static str,
    pub(super) cache_control: &'static str,
}

pub(super) struct Assets {
    pub(super) css: Asset,
    pub(super) js: Asset,
    pub(super) icon: Asset,
    /// The app shell with the assets' names filled in; `{{csrf}}` is left for each page.
    pub(super) app_html: String,
    /// The sign-in page with the assets' names filled in; `{{message}}` is left.
    pub(super) login_html: String,
}

fn asset(
    stem: &str,
    ext: &str,
    body: &'static str,
    content_type: &'static str,
    cache_control: &'static str,
) -> Asset {
    let digest = Sha256::digest(body.as_bytes());
    let hash = crate::hex::hex(&digest[..5]);
    Asset {
        path: format!("/dashboard/assets/{stem}.{hash}.{ext}"),
        body,
        content_type,
        cache_control,
    }
}

fn fill(template: &str, css: &Asset, js: &Asset, icon: &Asset) -> String {
    template
        .replace("{{css}}", &css.path)
        .replace("{{js}}", &js.path)
        .replace("{{icon}}", &icon.path)
}

pub(super) static ASSETS: LazyLock<Assets> = LazyLock::new(|| {
    let css = asset(
        "app",
        "css",
        APP_CSS,
        "text/css; charset=utf-8",
        CACHE_PUBLIC,
    );
    let js = asset(
        "app",
        "js",
        APP_JS,
        "text/javascript; charset=utf-8",
        CACHE_PRIVATE,
    );
    let icon = asset("favicon", "svg", FAVICON, "image/svg+xml", CACHE_PUBLIC);
    Assets {
        app_html: fill(APP_HTML, &css, &js, &icon),
        login_html: fill(LOGIN_HTML, &css, &js, &icon),
        css,
        js,
        icon,
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_content_and_the_shells_use_them() {
        let a = &*ASSETS;
        for (asset, body) in [(&a.css, APP_CSS), (&a.js, APP_JS), (&a.icon, FAVICON)] {
            let hash = crate::hex::hex(&Sha256::digest(body.as_bytes())[..5]);
            assert!(asset.path.contains(&format!(".{hash}.")), "{}", asset.path);
        }
        for path in [&a.css.path, &a.js.path, &a.icon.path] {
            assert!(a.app_html.contains(path.as_str()), "{path}");
        }
        assert!(a.login_html.contains(&a.css.path) && a.login_html.contains(&a.icon.path));
        assert!(!a.app_html.contains("{{css}}") && !a.login_html.contains("{{icon}}"));
        assert!(a.app_html.contains("{{csrf}}") && a.login_html.contains("{{message}}"));
    }
}
