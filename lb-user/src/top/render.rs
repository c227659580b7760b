//! Drawing a [`Screen`] with ratatui: a title line, the services table,
//! the VRRP table and the sync line. Layout only; every text comes from
//! [`Screen`] (tested without a terminal) and this module's tests draw
//! into ratatui's in-memory backend.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize as _};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table, Wrap};

use super::view::{SERVICE_HEADER, Screen, VRRP_HEADER, interval_text};

/// Column widths: the widest of header and cells, plus nothing (the
/// table spaces columns by 2).
fn widths<const N: usize>(header: &[&str; N], rows: &[[String; N]]) -> Vec<Constraint> {
    (0..N)
        .map(|i| {
            let w = rows
                .iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0);
            Constraint::Length(u16::try_from(w).unwrap_or(u16::MAX))
        })
        .collect()
}

/// A table of `rows` under `header`, in a bordered block titled `title`.
fn table<'a, const N: usize>(
    title: &'a str,
    header: &[&'a str; N],
    rows: &[[String; N]],
    style_of: impl Fn(&[String; N]) -> Style,
) -> Table<'a> {
    let widths = widths(header, rows);
    let body: Vec<Row> = rows
        .iter()
        .map(|r| Row::new(r.clone()).style(style_of(r)))
        .collect();
    Table::new(body, widths)
        .header(Row::new(header.to_vec()).add_modifier(Modifier::BOLD))
        .column_spacing(2)
        .block(Block::bordered().title(title))
}

/// Draw `screen` (refreshed every `interval`) on the whole frame.
pub fn draw(frame: &mut Frame, screen: &Screen, interval: Duration) {
    let vrrp_rows = screen.vrrp_cells();
    let vrrp_height = if vrrp_rows.is_empty() {
        0
    } else {
        u16::try_from(vrrp_rows.len() + 3).unwrap_or(u16::MAX)
    };
    // An error (lbd's path, the os error) may take two lines.
    let status_height = if screen.error.is_some() { 2 } else { 1 };
    let [title, status, services, vrrp, sync]: [Rect; 5] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(status_height),
        Constraint::Min(4),
        Constraint::Length(vrrp_height),
        Constraint::Length(u16::from(screen.sync.is_some())),
    ])
    .areas(frame.area());
    frame.render_widget(
        Paragraph::new(Line::from(format!(
            "lbctl top — {} — every {} — q, Esc or Ctrl-C quits",
            if screen.title.is_empty() {
                "lbd"
            } else {
                &screen.title
            },
            interval_text(interval)
        )))
        .reversed(),
        title,
    );
    let line = match (&screen.error, &screen.note) {
        (Some(e), _) => Line::from(format!("{e} (retrying every {})", interval_text(interval)))
            .style(Style::new().fg(Color::Red).add_modifier(Modifier::BOLD)),
        (None, Some(n)) => Line::from(n.as_str()).style(Style::new().fg(Color::Yellow)),
        (None, None) => Line::from(
            "rates per second over the last interval; k M G T = thousand, million, billion, trillion; - = no rate yet",
        )
        .dim(),
    };
    frame.render_widget(Paragraph::new(line).wrap(Wrap { trim: true }), status);
    let service_rows = screen.service_cells();
    frame.render_widget(
        table(" services ", &SERVICE_HEADER, &service_rows, |r| {
            if r[2] == "down" || r[2] == "standby" {
                Style::new().fg(Color::Red)
            } else if r[3] == "yes" {
                Style::new().fg(Color::Yellow)
            } else if r[0].starts_with(' ') {
                Style::new()
            } else {
                Style::new().add_modifier(Modifier::BOLD)
            }
        }),
        services,
    );
    if vrrp_height > 0 {
        frame.render_widget(
            table(" vrrp ", &VRRP_HEADER, &vrrp_rows, |r| {
                match r[1].as_str() {
                    "MASTER" => Style::new().fg(Color::Green),
                    "FAULT" => Style::new().fg(Color::Red),
                    _ => Style::new(),
                }
            }),
            vrrp,
        );
    }
    if let Some(s) = &screen.sync {
        frame.render_widget(Paragraph::new(s.as_str()), sync);
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::top::rates::Rates;
    use crate::top::view::{BackendRow, ServiceRow, VrrpRow};

    fn screen() -> Screen {
        Screen {
            title: "lbd lb-test (pid 42)".into(),
            error: None,
            note: None,
            services: vec![ServiceRow {
                service: "198.18.0.100:80/tcp".into(),
                mode: "dsr".into(),
                active: true,
                rates: Rates {
                    packets: Some(1234.0),
                    bytes: Some(5_600_000.0),
                    new_flows: Some(12.0),
                },
                backends: vec![BackendRow {
                    address: "198.18.0.11:80".into(),
                    weight: 1,
                    healthy: true,
                    drained: false,
                    in_pool: true,
                    sorry: false,
                    rates: Rates::NONE,
                }],
            }],
            vrrp: vec![VrrpRow {
                name: "VI_1".into(),
                state: "MASTER".into(),
                priority: "150/150".into(),
                master: "-".into(),
                vips: "198.18.0.100/24".into(),
            }],
            sync: Some("sync: no flows received yet; bulk done; peers: none".into()),
        }
    }

    fn text(terminal: &Terminal<TestBackend>) -> String {
        let buffer = terminal.backend().buffer();
        let width = buffer.area.width as usize;
        buffer
            .content
            .chunks(width)
            .map(|line| {
                line.iter()
                    .map(ratatui::buffer::Cell::symbol)
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn line_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} in\n{text}"))
            .split(|c: char| c.is_whitespace() || c == '│')
            .filter(|w| !w.is_empty())
            .collect()
    }

    #[test]
    fn draws_services_backends_vrrp_and_sync() {
        let mut terminal = Terminal::new(TestBackend::new(120, 20)).unwrap();
        terminal
            .draw(|f| draw(f, &screen(), Duration::from_secs(1)))
            .unwrap();
        let t = text(&terminal);
        assert!(
            t.contains("lbctl top — lbd lb-test (pid 42) — every 1s"),
            "{t}"
        );
        assert_eq!(
            line_with(&t, "SERVICE / BACKEND"),
            [
                "SERVICE", "/", "BACKEND", "MODE", "HEALTH", "DRAINED", "IN", "POOL", "WEIGHT",
                "PKTS/S", "BYTES/S", "FLOWS/S"
            ]
        );
        assert_eq!(
            line_with(&t, "198.18.0.100:80/tcp"),
            [
                "198.18.0.100:80/tcp",
                "dsr",
                "active",
                "-",
                "1/1",
                "-",
                "1.2k",
                "5.6M",
                "12.0"
            ]
        );
        assert_eq!(
            line_with(&t, "198.18.0.11:80"),
            ["198.18.0.11:80", "up", "no", "yes", "1", "-", "-", "-"]
        );
        assert_eq!(
            line_with(&t, "VI_1"),
            ["VI_1", "MASTER", "150/150", "-", "198.18.0.100/24"]
        );
        assert!(t.contains("sync: no flows received yet"), "{t}");
    }

    /// Too small a terminal draws what fits, without panicking; the error
    /// line replaces the legend.
    #[test]
    fn draws_in_a_tiny_terminal_and_shows_the_error() {
        let mut s = screen();
        s.error = Some("lbd unreachable: connection refused".into());
        for (w, h) in [(120, 20), (30, 5), (1, 1), (10, 2)] {
            let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
            terminal
                .draw(|f| draw(f, &s, Duration::from_millis(500)))
                .unwrap();
            if w == 120 {
                let t = text(&terminal);
                assert!(
                    t.contains("lbd unreachable: connection refused (retrying every 500ms)"),
                    "{t}"
                );
            }
        }
    }
}
