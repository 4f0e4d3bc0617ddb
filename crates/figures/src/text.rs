//! Token text heatmaps: each token's background shows its weight, as HTML for browsers and
//! as LaTeX (`\colorbox` per token) for papers.

/// A token as shown in running text: its visible text and whether it joins the previous
/// token without a space (a WordPiece `##piece`). SentencePiece/BPE word-start markers
/// (`▁`, `Ġ`) are dropped.
fn pieces(tokens: &[String]) -> Vec<(String, bool)> {
    tokens
        .iter()
        .enumerate()
        .map(|(i, t)| match t.strip_prefix("##") {
            Some(rest) if i > 0 && !rest.is_empty() => (rest.to_string(), true),
            _ => (t.trim_start_matches(['▁', 'Ġ']).to_string(), false),
        })
        .collect()
}

/// Min-max normalised weights (all 0 when they are all equal; NaN counts as 0).
fn normalised(weights: &[f32]) -> Vec<f32> {
    let finite = weights.iter().filter(|w| w.is_finite());
    let lo = finite.clone().fold(f32::INFINITY, |a, &b| a.min(b));
    let hi = finite.fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    weights
        .iter()
        .map(|&w| {
            if hi > lo && w.is_finite() {
                (w - lo) / (hi - lo)
            } else {
                0.0
            }
        })
        .collect()
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

/// An HTML page: the tokens in order, each on a red background whose opacity is its
/// min-max normalised weight, a legend, and `title` as heading. The text wraps with the window.
pub fn text_heatmap_html(tokens: &[String], weights: &[f32], title: &str) -> String {
    let mut body = String::new();
    for (i, ((text, glued), w)) in pieces(tokens).iter().zip(normalised(weights)).enumerate() {
        if i > 0 && !glued {
            body.push(' ');
        }
        body.push_str(&format!(
            "<span class=\"tok\" style=\"background-color: rgba(255, 0, 0, {:.3})\" title=\"{:.4}\">{}</span>",
            w,
            w,
            html_escape(text)
        ));
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

/// LaTeX escaping of every character that is special in running text.
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
            _ => out.push(c),
        }
    }
    out
}

/// A standalone LaTeX document: one `\colorbox{red!P}{\strut token}` per token, P = the
/// min-max normalised weight × 100, wrapping within a 16 cm paragraph (pdflatex, `xcolor`).
pub fn text_heatmap_latex(tokens: &[String], weights: &[f32]) -> String {
    let mut body = String::new();
    for (i, ((text, glued), w)) in pieces(tokens).iter().zip(normalised(weights)).enumerate() {
        if i > 0 && !glued {
            body.push_str(" \n");
        }
        body.push_str(&format!(
            "\\colorbox{{red!{:.1}}}{{\\strut {}}}",
            w * 100.0,
            latex_escape(text)
        ));
    }
    format!(
        "\\documentclass[varwidth=16cm]{{standalone}}\n\\usepackage[utf8]{{inputenc}}\n\\usepackage{{xcolor}}\n\
\\begin{{document}}\n{{\\setlength{{\\fboxsep}}{{1pt}}\\raggedright\n{body}\n}}\n\\end{{document}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn every_latex_special_character_is_escaped() {
        assert_eq!(
            latex_escape(r"a#b%c&d_e^f{g}h\i~j$k"),
            r"a\#b\%c\&d\_e\textasciicircum{}f\{g\}h\textbackslash{}i\textasciitilde{}j\$k"
        );
    }

    #[test]
    fn wordpiece_pieces_join_their_word() {
        let doc = text_heatmap_latex(
            &toks(&["the", "play", "##ing", "##"]),
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
    fn html_shows_tokens_in_order_and_escaped() {
        let page = text_heatmap_html(
            &toks(&["[CLS]", "a", "<b>", "▁cat"]),
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
