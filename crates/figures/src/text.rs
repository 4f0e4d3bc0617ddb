//! Token text heatmaps: each token's background shows its weight, as HTML for browsers and
//! as LaTeX (`\colorbox` per token) for papers. Which pieces join into words, and how each reads,
//! is the word rule's ([`ingest::word_pieces`]).

use ingest::Piece;

/// Min-max normalised weights (all 0 when they are all equal). NaN stays NaN: by the NaN rule
/// it is skipped by the minimum and maximum, and its token is shown without a colour.
fn normalised(weights: &[f32]) -> Vec<f32> {
    let numbers = weights.iter().filter(|w| !w.is_nan());
    let lo = numbers.clone().fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = numbers.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    weights
        .iter()
        .map(|&w| {
            if w.is_nan() {
                f32::NAN
            } else if hi > lo {
                ((w - lo) / (hi - lo)).clamp(0.0, 1.0)
            } else {
                0.0
            }
        })
        .collect()
}

/// What goes between the previous piece and this one: nothing inside a word, a space
/// between words, and nothing around a whitespace piece (it shows its own whitespace).
fn separator(pieces: &[Piece], i: usize) -> &'static str {
    let joined =
        i == 0 || !pieces[i].starts_word || pieces[i].whitespace || pieces[i - 1].whitespace;
    if joined {
        ""
    } else {
        " "
    }
}

fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// An HTML page: the pieces in order (words as the word rule joins them, line breaks where a
/// piece holds a newline), each on a red background whose opacity is its min-max normalised
/// weight (NaN: no colour, "NaN" in its tooltip), a legend, and `title` as heading. The text
/// wraps with the window.
pub fn text_heatmap_html(pieces: &[Piece], weights: &[f32], title: &str) -> String {
    let mut body = String::new();
    for (i, (piece, w)) in pieces.iter().zip(normalised(weights)).enumerate() {
        body.push_str(separator(pieces, i));
        let text = if piece.whitespace {
            html_escape(&piece.text).replace('\n', "<br>")
        } else {
            html_escape(&piece.text)
        };
        if w.is_nan() {
            body.push_str(&format!("<span class=\"tok\" title=\"NaN\">{text}</span>"));
        } else {
            body.push_str(&format!(
                "<span class=\"tok\" style=\"background-color: rgba(255, 0, 0, {w:.3})\" title=\"{w:.4}\">{text}</span>"
            ));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\n\
body {{ font-family: sans-serif; margin: 2em; max-width: 60em; }}\n\
p.text {{ line-height: 2; font-size: 1.2em; }}\n\
span.tok {{ padding: 0.1em 0.05em; border-radius: 0.2em; }}\n\
.legend {{ display: flex; align-items: center; gap: 0.5em; font-size: 0.9em; color: #444; }}\n\
.legend .bar {{ width: 12em; height: 1em; background: linear-gradient(to right, rgba(255,0,0,0), rgba(255,0,0,1)); border: 1px solid #ccc; }}\n\
</style>\n</head>\n<body>\n<h1>{t}</h1>\n\
<div class=\"legend\"><span>low</span><span class=\"bar\"></span><span>high attention received (min-max normalised)</span></div>\n\
<p class=\"text\">{body}</p>\n</body>\n</html>\n",
        t = html_escape(title),
    )
}

/// Whether pdflatex with `T1` fonts and `utf8` input shows `c`: printable ASCII, Latin-1,
/// Latin Extended-A but the nine letters `t1enc.dfu` leaves out (Ħ ħ ĸ Ŀ ŀ ŉ Ŧ ŧ ſ), and the
/// dashes, quotes, bullet and euro sign of `ts1enc.dfu`.
fn latex_shows(c: char) -> bool {
    const UNDEFINED: [u32; 9] = [
        0x126, 0x127, 0x138, 0x13F, 0x140, 0x149, 0x166, 0x167, 0x17F,
    ];
    match c as u32 {
        0x20..=0x7E => true,
        u @ 0xA0..=0x17F => !UNDEFINED.contains(&u),
        0x2013 | 0x2014 | 0x2018 | 0x2019 | 0x201C | 0x201D | 0x2022 | 0x20AC => true,
        _ => false,
    }
}

/// LaTeX for running text: every special character escaped, whitespace as a space, and a
/// character the font cannot show (CJK, emoji, other scripts) replaced visibly by its code
/// point in a box, `[U+4E2D]`, so that the document always compiles.
pub fn latex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '#' | '%' | '&' | '_' | '{' | '}' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '^' => out.push_str("\\textasciicircum{}"),
            '~' => out.push_str("\\textasciitilde{}"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            '|' => out.push_str("\\textbar{}"),
            c if c.is_whitespace() => out.push(' '),
            c if latex_shows(c) => out.push(c),
            c => out.push_str(&format!("\\fbox{{\\scriptsize U+{:04X}}}", c as u32)),
        }
    }
    out
}

/// A standalone LaTeX document: one `\colorbox{red!P}{\strut piece}` per piece, P = the
/// min-max normalised weight × 100 (a NaN weight: no box), words joined as the word rule says,
/// a line break where a piece holds a newline, wrapping on an A4 page. It compiles with pdflatex
/// and Debian's `texlive-latex-base` + `texlive-latex-recommended` alone.
pub fn text_heatmap_latex(pieces: &[Piece], weights: &[f32]) -> String {
    let mut body = String::new();
    for (i, (piece, w)) in pieces.iter().zip(normalised(weights)).enumerate() {
        if separator(pieces, i) == " " {
            body.push_str(" \n");
        }
        if piece.whitespace {
            body.push_str(if piece.text.contains('\n') {
                "\\newline\n"
            } else {
                " \n"
            });
        } else if w.is_nan() {
            body.push_str(&format!("{{\\strut {}}}", latex_escape(&piece.text)));
        } else {
            body.push_str(&format!(
                "\\colorbox{{red!{:.1}}}{{\\strut {}}}",
                w * 100.0,
                latex_escape(&piece.text)
            ));
        }
    }
    format!(
        "\\documentclass{{article}}\n\\usepackage[a4paper,margin=2cm]{{geometry}}\n\\pagestyle{{empty}}\n\\usepackage[T1]{{fontenc}}\n\\usepackage[utf8]{{inputenc}}\n\\usepackage{{lmodern}}\n\\usepackage{{xcolor}}\n\
\\begin{{document}}\n{{\\setlength{{\\fboxsep}}{{1pt}}\\raggedright\n{body}\n}}\n\\end{{document}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(v: &[&str]) -> Vec<Piece> {
        ingest::word_pieces(v)
    }

    #[test]
    fn every_latex_special_character_is_escaped() {
        assert_eq!(
            latex_escape(r"a#b%c&d_e^f{g}h\i~j$k<l>m|n"),
            r"a\#b\%c\&d\_e\textasciicircum{}f\{g\}h\textbackslash{}i\textasciitilde{}j\$k\textless{}l\textgreater{}m\textbar{}n"
        );
    }

    #[test]
    fn characters_the_font_lacks_are_shown_by_code_point() {
        assert_eq!(
            latex_escape("é中😀"),
            r"é\fbox{\scriptsize U+4E2D}\fbox{\scriptsize U+1F600}"
        );
    }

    #[test]
    fn wordpiece_pieces_join_their_word() {
        let doc = text_heatmap_latex(
            &pieces(&["the", "play", "##ing", "##"]),
            &[0.0, 0.5, 1.0, 0.25],
        );
        assert!(
            doc.contains("{\\strut play}\\colorbox{red!100.0}{\\strut ing}"),
            "{doc}"
        );
        // A lone `##` is a token of its own, escaped.
        assert!(doc.contains("{\\strut \\#\\#}"), "{doc}");
        assert_eq!(doc.matches("\\colorbox").count(), 4);
    }

    #[test]
    fn sentencepiece_and_byte_level_pieces_join_their_word() {
        let page = text_heatmap_html(&pieces(&["▁wunder", "bar"]), &[0.0, 1.0], "t");
        assert!(page.contains(">wunder</span><span"), "{page}");
        let page = text_heatmap_html(
            &pieces(&["Ġwin", "dows", "Ġcaf", "Ã©", "Ċ", "x"]),
            &[1.0; 6],
            "t",
        );
        assert!(page.contains(">win</span><span"), "{page}");
        assert!(page.contains(">é</span>"), "{page}");
        assert!(page.contains("<br>"), "{page}");
    }

    #[test]
    fn a_nan_weight_is_shown_without_colour() {
        let page = text_heatmap_html(&pieces(&["a", "b", "c"]), &[0.0, f32::NAN, 2.0], "t");
        assert!(page.contains("title=\"NaN\">b<"), "{page}");
        assert!(page.contains("rgba(255, 0, 0, 1.000)"), "{page}");
    }

    #[test]
    fn html_shows_tokens_in_order_and_escaped() {
        let page = text_heatmap_html(
            &pieces(&["[CLS]", "a", "<b>", "cat"]),
            &[3.0, 1.0, 2.0, 1.4],
            "t",
        );
        let a = page.find(">[CLS]<").unwrap();
        let b = page.find(">&lt;b&gt;<").unwrap();
        let c = page.find(">cat<").unwrap();
        assert!(a < b && b < c);
        assert!(page.contains("rgba(255, 0, 0, 0.500)"));
    }
}
