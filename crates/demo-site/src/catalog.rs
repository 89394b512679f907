//! What the shop sells (digital goods, prices in EUR cents) and what the
//! forum shows (a few static threads).

/// The currency of every price.
pub const CURRENCY: &str = "EUR";

/// A digital good.
#[derive(Debug, PartialEq, Eq)]
pub struct Product {
    /// In URLs: lowercase letters, digits and `-`.
    pub id: &'static str,
    /// What the contract and the purchase page say.
    pub summary: &'static str,
    /// In minor units (cents).
    pub price: i64,
    /// What the buyer gets.
    pub content: &'static str,
}

pub const PRODUCTS: [Product; 3] = [
    Product {
        id: "ebook-rust",
        summary: "Ownership in Practice (EPUB)",
        price: 499,
        content: "Chapter 1. Every value has one owner. When the owner goes out of scope, \
                  the value is dropped; borrowing lets others look without taking it away.",
    },
    Product {
        id: "album-night",
        summary: "Night Trains, an album (FLAC)",
        price: 899,
        content: "1. Departure (4:12)  2. Sleeper Car (5:40)  3. Border at Dawn (3:58)  \
                  4. Arrival (6:05)",
    },
    Product {
        id: "ebook-oauth",
        summary: "A Field Guide to OAuth (PDF)",
        price: 1299,
        content: "A client never sees the password. It sees a code, trades it for a token, \
                  and narrows that token before it hands it to anyone else.",
    },
];

pub fn product(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// `499`, `EUR` → `4.99 EUR`, as the payments service writes prices.
pub fn price(amount: i64, currency: &str) -> String {
    let sign = if amount < 0 { "-" } else { "" };
    let abs = amount.unsigned_abs();
    format!("{sign}{}.{:02} {currency}", abs / 100, abs % 100)
}

/// A forum thread (static).
pub struct Thread {
    pub title: &'static str,
    pub author: &'static str,
    pub replies: u32,
}

pub const THREADS: [Thread; 3] = [
    Thread {
        title: "Welcome! Introduce yourself here",
        author: "moderator",
        replies: 42,
    },
    Thread {
        title: "Which e-book from the shop should I read first?",
        author: "reader",
        replies: 7,
    },
    Thread {
        title: "Single sign-on: how does this forum know me?",
        author: "curious",
        replies: 3,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_as_euros() {
        assert_eq!(price(499, "EUR"), "4.99 EUR");
        assert_eq!(price(1299, "EUR"), "12.99 EUR");
        assert_eq!(price(5, "EUR"), "0.05 EUR");
        assert_eq!(price(-100, "USD"), "-1.00 USD");
    }

    #[test]
    fn product_ids_need_no_encoding() {
        for p in &PRODUCTS {
            assert!(
                p.id.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            );
            assert!(p.price > 0);
            assert_eq!(product(p.id), Some(p));
        }
        assert_eq!(product("nothing"), None);
    }
}
