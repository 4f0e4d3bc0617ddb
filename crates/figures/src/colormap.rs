//! Colour maps as anchor colours at equal steps, interpolated linearly (matplotlib's maps
//! sampled at their anchors).

/// The colour maps a figure can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// matplotlib's default: dark purple → yellow.
    Viridis,
    /// The EEG look of the spacetimeformer figures: black → purple → blue → green → yellow → red → grey.
    NipySpectral,
    /// ColorBrewer's white → purple (the clustering notebook's quadrants).
    Purples,
    /// Diverging blue ← white → red, for differences (`A − B`).
    RdBu,
}

const VIRIDIS: &[u32] = &[
    0x440154, 0x472d7b, 0x3b528b, 0x2c728e, 0x21918c, 0x28ae80, 0x5ec962, 0xaddc30, 0xfde725,
];
const PURPLES: &[u32] = &[
    0xfcfbfd, 0xefedf5, 0xdadaeb, 0xbcbddc, 0x9e9ac8, 0x807dba, 0x6a51a3, 0x54278f, 0x3f007d,
];
const RDBU: &[u32] = &[
    0x2166ac, 0x4393c3, 0x92c5de, 0xd1e5f0, 0xf7f7f7, 0xfddbc7, 0xf4a582, 0xd6604d, 0xb2182b,
];
/// matplotlib's `_nipy_spectral_data` at its 21 anchors (0, 0.05, …, 1).
const NIPY_SPECTRAL: &[u32] = &[
    0x000000, 0x770088, 0x880099, 0x0000aa, 0x0000dd, 0x0077dd, 0x0099dd, 0x00aaaa, 0x00aa88,
    0x009900, 0x00bb00, 0x00dd00, 0x00ff00, 0xbbff00, 0xeeee00, 0xffcc00, 0xff9900, 0xff0000,
    0xdd0000, 0xcc0000, 0xcccccc,
];

impl Colormap {
    pub fn parse(name: &str) -> Option<Colormap> {
        match name.to_ascii_lowercase().as_str() {
            "viridis" => Some(Colormap::Viridis),
            "nipy_spectral" => Some(Colormap::NipySpectral),
            "purples" => Some(Colormap::Purples),
            "rdbu" | "rdbu_r" => Some(Colormap::RdBu),
            _ => None,
        }
    }

    fn anchors(self) -> &'static [u32] {
        match self {
            Colormap::Viridis => VIRIDIS,
            Colormap::NipySpectral => NIPY_SPECTRAL,
            Colormap::Purples => PURPLES,
            Colormap::RdBu => RDBU,
        }
    }

    /// A line colour that stands out on the map: white on dark maps, black on light ones.
    pub fn divider(self) -> [u8; 3] {
        match self {
            Colormap::Viridis | Colormap::NipySpectral => [255, 255, 255],
            Colormap::Purples | Colormap::RdBu => [0, 0, 0],
        }
    }

    /// The colour of a NaN cell (matplotlib's "bad" colour): one the map itself never takes,
    /// so that a NaN is not read as a low or high value.
    pub fn bad(self) -> [u8; 3] {
        match self {
            Colormap::Viridis | Colormap::NipySpectral => [255, 255, 255],
            Colormap::Purples => [255, 165, 0],
            Colormap::RdBu => [128, 128, 128],
        }
    }

    /// The colour at `t` ∈ [0, 1] (clamped; NaN is [`Colormap::bad`]).
    pub fn rgb(self, t: f32) -> [u8; 3] {
        let a = self.anchors();
        if t.is_nan() {
            return self.bad();
        }
        let t = t.clamp(0.0, 1.0);
        let x = t * (a.len() - 1) as f32;
        let i = (x.floor() as usize).min(a.len() - 2);
        let f = x - i as f32;
        let (lo, hi) = (unpack(a[i]), unpack(a[i + 1]));
        [0, 1, 2].map(|c| (lo[c] as f32 + (hi[c] as f32 - lo[c] as f32) * f).round() as u8)
    }
}

fn unpack(c: u32) -> [u8; 3] {
    [(c >> 16) as u8, (c >> 8) as u8, c as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_and_midpoints_are_the_anchors() {
        assert_eq!(Colormap::Viridis.rgb(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(Colormap::Viridis.rgb(1.0), [0xfd, 0xe7, 0x25]);
        assert_eq!(Colormap::Viridis.rgb(0.5), [0x21, 0x91, 0x8c]);
        assert_eq!(Colormap::RdBu.rgb(0.5), [0xf7, 0xf7, 0xf7]);
        assert_eq!(Colormap::NipySpectral.rgb(2.0), [0xcc, 0xcc, 0xcc]);
        assert_eq!(Colormap::Purples.rgb(f32::NAN), [255, 165, 0]);
    }
}
