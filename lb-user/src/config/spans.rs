//! Lines of the TOML file's fields, from the parser's spans: the file is
//! parsed once more, with `toml_edit` (the parser `toml` itself uses), only
//! when an error needs a line or a field name. [`super::Config`] stays
//! plain: no `Spanned` in the model, whose users (the controller, the VRRP
//! driver, keepalived's reader, the lab tools) build and read it directly.

use toml_edit::{ImDocument, Item};

use super::validate::FieldPath;

/// The file's text, parsed with spans.
pub(crate) struct Spans<'t> {
    text: &'t str,
    doc: ImDocument<&'t str>,
}

/// A step of a path into the document: a key or an array index.
#[derive(Debug, Clone, Copy)]
enum Step<'d> {
    Key(&'d str),
    Index(usize),
}

impl<'t> Spans<'t> {
    /// `text` parsed; `None` when it is not valid TOML.
    pub(crate) fn parse(text: &'t str) -> Option<Self> {
        let doc = ImDocument::parse(text).ok()?;
        Some(Self { text, doc })
    }

    /// The line of `at`: its key's, when the field is written as
    /// `field = value` in its table; else the line of the table's header
    /// (a default that fails validation, or a field written as a table of
    /// its own). `None` when the table is not in the file.
    pub(crate) fn line(&self, at: &FieldPath) -> Option<usize> {
        let mut table = self.doc.as_item().get(at.table)?;
        if table.is_array_of_tables() || table.is_array() {
            table = table.get(at.index.unwrap_or(0))?;
        }
        let key = table
            .as_table_like()
            .and_then(|t| t.get_key_value(at.field))
            .filter(|(_, item)| !at.field.is_empty() && item.is_value())
            .and_then(|(key, _)| key.span());
        let span = key.or_else(|| table.span())?;
        Some(line_of(self.text, span.start))
    }

    /// The keyword field (a [`super::Protocol`], [`super::Mode`],
    /// [`super::Scheduler`], [`super::NoBackend`], [`super::HealthKind`]
    /// or [`super::XdpMode`]) whose value holds byte `pos`, named as
    /// validation names fields: `service[1].mode`, `service[0].health`
    /// (for its `kind`), `dataplane.xdp_mode`. `None` elsewhere: other
    /// deserialization errors name only the line.
    pub(crate) fn keyword_field_at(&self, pos: usize) -> Option<FieldPath> {
        let mut path = Vec::new();
        let mut found = None;
        value_at(self.doc.as_item(), pos, &mut path, &mut found);
        let field = |table, index, field| FieldPath {
            table,
            index,
            field,
        };
        match found?.as_slice() {
            [Step::Key("service"), Step::Index(i), Step::Key(key)] => {
                let key = ["protocol", "mode", "scheduler", "on_no_backend"]
                    .into_iter()
                    .find(|k| k == key)?;
                Some(field("service", Some(*i), key))
            }
            [
                Step::Key("service"),
                Step::Index(i),
                Step::Key("health"),
                Step::Key("kind"),
            ] => Some(field("service", Some(*i), "health")),
            [Step::Key("dataplane"), Step::Key("xdp_mode")] => {
                Some(field("dataplane", None, "xdp_mode"))
            }
            _ => None,
        }
    }
}

/// Into `found`, the path (from `item`, at `path`) of the innermost value
/// whose span holds `pos`. Tables are searched whatever their spans: a
/// `[table.sub]` lies outside its parent's.
fn value_at<'d>(
    item: &'d Item,
    pos: usize,
    path: &mut Vec<Step<'d>>,
    found: &mut Option<Vec<Step<'d>>>,
) {
    if item.is_value() && item.span().is_some_and(|s| s.contains(&pos)) {
        *found = Some(path.clone());
    }
    if let Some(table) = item.as_table_like() {
        for (key, child) in table.iter() {
            path.push(Step::Key(key));
            value_at(child, pos, path, found);
            path.pop();
        }
    } else {
        for (i, child) in (0..).map_while(|i| Some(i).zip(item.get(i))) {
            path.push(Step::Index(i));
            value_at(child, pos, path, found);
            path.pop();
        }
    }
}

/// 1-based line of byte offset `pos`.
pub(crate) fn line_of(text: &str, pos: usize) -> usize {
    text[..pos.min(text.len())].matches('\n').count() + 1
}
