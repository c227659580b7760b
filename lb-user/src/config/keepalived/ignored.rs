//! The keepalived keywords lb accepts and does not honour: each is a
//! warning naming the file and line and (from the keyword table,
//! `keywords`) why, never silently dropped.

use super::Ctx;
use super::keywords::{Support, why_ignored};
use super::lexer::Node;

impl Ctx {
    /// A keyword lb does not honour: a warning.
    pub(super) fn ignored(&mut self, n: &Node, section: &str) {
        let kw = n.kw();
        let message = match why_ignored(kw) {
            Some(Support::NoEffect(reason)) => {
                format!("`{kw}` in {section} has no effect in lb ({reason}), ignored")
            }
            Some(Support::Unsupported(impact)) => {
                format!("unsupported keyword `{kw}` in {section}, ignored: {impact}")
            }
            Some(Support::Honoured { .. }) | None => {
                format!("unsupported keyword `{kw}` in {section}, ignored")
            }
        };
        self.warn(n.loc(), message);
    }
}
