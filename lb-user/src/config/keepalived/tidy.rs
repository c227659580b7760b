//! [`super::to_toml`]'s layout: `toml::to_string`'s output reshaped like
//! `examples/lb.toml`.

/// A `[table]` or `[[table]]` of `toml::to_string`'s output.
struct Section {
    header: String,
    name: String,
    lines: Vec<String>,
    /// Inline children: key, elements, is an array.
    children: Vec<(String, Vec<String>, bool)>,
}

/// `toml::to_string`'s output in the shape of `examples/lb.toml`: nested
/// tables inline (`health = { ... }`, `backend = [ { ... }, ... ]`), empty
/// optional lists left out. `None` when the text has a shape this does
/// not know.
pub(super) fn tidy(raw: &str) -> Option<String> {
    let keep = |line: &str| !line.ends_with(" = []") || line.starts_with("backend = ");
    let mut top: Vec<String> = Vec::new();
    let mut sections: Vec<Section> = Vec::new();
    let mut child: Option<(String, bool, Vec<String>)> = None;
    let close = |child: &mut Option<(String, bool, Vec<String>)>, sections: &mut Vec<Section>| {
        if let Some((key, array, lines)) = child.take() {
            let inline = format!("{{ {} }}", lines.join(", "));
            let parent = sections.last_mut()?;
            match parent.children.iter_mut().find(|c| c.0 == key) {
                Some(c) if array && c.2 => c.1.push(inline),
                Some(_) => return None,
                None => parent.children.push((key, vec![inline], array)),
            }
        }
        Some(())
    };
    for line in raw.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with('[') {
            close(&mut child, &mut sections)?;
            let array = line.starts_with("[[");
            let name = line.trim_matches(|c| c == '[' || c == ']').to_owned();
            match name.split_once('.') {
                None => sections.push(Section {
                    header: line.to_owned(),
                    name,
                    lines: Vec::new(),
                    children: Vec::new(),
                }),
                Some((parent, key)) => {
                    if sections.last().is_none_or(|s| s.name != parent) || key.contains('.') {
                        return None;
                    }
                    child = Some((key.to_owned(), array, Vec::new()));
                }
            }
        } else if let Some((_, _, lines)) = &mut child {
            lines.push(line.to_owned());
        } else if let Some(s) = sections.last_mut() {
            if keep(line) {
                s.lines.push(line.to_owned());
            }
        } else if keep(line) {
            top.push(line.to_owned());
        }
    }
    close(&mut child, &mut sections)?;
    render(&top, sections)
}

/// The top-level lines, then each section with its children inline.
fn render(top: &[String], sections: Vec<Section>) -> Option<String> {
    let mut out = String::new();
    for line in top {
        out.push_str(line);
        out.push('\n');
    }
    for s in sections {
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str(&s.header);
        out.push('\n');
        for line in &s.lines {
            out.push_str(line);
            out.push('\n');
        }
        for (key, items, array) in s.children {
            match (array, items.as_slice()) {
                (false, [one]) => out.push_str(&format!("{key} = {one}\n")),
                (true, [one]) => out.push_str(&format!("{key} = [{one}]\n")),
                (true, many) => {
                    out.push_str(&format!("{key} = [\n"));
                    for item in many {
                        out.push_str(&format!("  {item},\n"));
                    }
                    out.push_str("]\n");
                }
                (false, _) => return None,
            }
        }
    }
    Some(out)
}
