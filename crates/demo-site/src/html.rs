//! The pages' HTML: one layout (the site's name, who is signed in, the
//! login or logout control) around each page's body, built with `format!`
//! and every value escaped with [`esc`]. No scripts: every control is a
//! link or a form (the one script is the shop's embedded checkout's,
//! `checkout.rs`).

use std::fmt::Write;

/// Escapes text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#x27;"),
            c => out.push(c),
        }
    }
    out
}

/// Who the header shows.
pub struct Header<'a> {
    pub site: &'a str,
    pub shop: bool,
    /// The signed-in user's email (or id), and the session's CSRF token.
    pub user: Option<(&'a str, &'a str)>,
    /// Where "Log in" comes back to.
    pub here: &'a str,
}

/// A whole page: `title` in `<title>` and after the site's name.
pub fn page(header: &Header<'_>, title: &str, body: &str) -> String {
    let mut nav = String::new();
    let _ = write!(nav, r#"<a href="/">Home</a>"#);
    if header.shop {
        let _ = write!(nav, r#" <a href="/orders">Your purchases</a>"#);
    }
    let who = match header.user {
        Some((name, csrf)) => format!(
            r#"<span id="who">Signed in as <strong id="who-email">{}</strong></span>
<form method="post" action="/logout" class="inline"><input type="hidden" name="csrf" value="{}"><button type="submit">Log out</button></form>"#,
            esc(name),
            esc(csrf)
        ),
        None => format!(
            r#"<span id="who">Not signed in</span> <a id="login" class="button" href="/login?next={}">Log in</a>"#,
            esc(&url::form_urlencoded::byte_serialize(header.here.as_bytes()).collect::<String>())
        ),
    };
    let full_title = if title == header.site {
        esc(title)
    } else {
        format!("{} · {}", esc(title), esc(header.site))
    };
    format!(
        r#"<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{full_title}</title><link rel="stylesheet" href="/style.css"></head>
<body>
<header><span class="site">{site}</span> <nav>{nav}</nav> <div class="account">{who}</div></header>
<main>
{body}
</main>
<footer>{site} is a demo site of Gatehouse: it signs people in through the Gatehouse identity provider.</footer>
</body>
</html>
"#,
        site = esc(header.site),
    )
}

pub const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:46rem;margin:0 auto;padding:0 1rem;color:#222}
header{display:flex;flex-wrap:wrap;gap:.5rem 1rem;align-items:center;border-bottom:1px solid #ddd;padding:.75rem 0}
header .site{font-weight:bold}header .account{margin-left:auto}
a.button,button{display:inline-block;padding:.35rem .8rem;border:1px solid #246;border-radius:4px;background:#246;color:#fff;text-decoration:none;font:inherit;cursor:pointer}
form.inline{display:inline}.checkout iframe{width:100%;height:40rem;border:1px solid #ddd;border-radius:4px}ul.items{list-style:none;padding:0}ul.items li{border:1px solid #ddd;border-radius:4px;padding:.6rem;margin:.5rem 0}ul.items li strong{display:block;margin-bottom:.3rem}
.price{font-weight:bold}.notice{background:#eef6ee;border:1px solid #9c9;padding:.6rem;border-radius:4px}
.error{background:#fbeeee;border:1px solid #c99;padding:.6rem;border-radius:4px}
.goods{background:#f6f6fb;border:1px solid #99c;padding:1rem;border-radius:4px}
footer{color:#777;font-size:.85rem;border-top:1px solid #ddd;margin-top:2rem;padding:.75rem 0}
code{word-break:break-all}
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#x27;&amp;&#x27;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_header_says_who_is_signed_in() {
        let signed_in = page(
            &Header {
                site: "Shop",
                shop: true,
                user: Some(("a@example.com", "tok")),
                here: "/",
            },
            "Shop",
            "<h1>Shop</h1>",
        );
        assert!(signed_in.contains("Signed in as <strong id=\"who-email\">a@example.com</strong>"));
        assert!(signed_in.contains("<title>Shop</title>"));
        let anonymous = page(
            &Header {
                site: "Shop",
                shop: false,
                user: None,
                here: "/offer/x?y=1",
            },
            "Offer",
            "",
        );
        assert!(anonymous.contains("href=\"/login?next=%2Foffer%2Fx%3Fy%3D1\""));
        assert!(anonymous.contains("<title>Offer · Shop</title>"));
    }
}
