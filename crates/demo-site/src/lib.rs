//! The demo sites: a shop selling digital goods and a forum, built on the
//! relier library.

pub enum Kind {
    Shop,
    Forum,
}
