//! `[encode] ladder`: smaller encodings of the same raw video, each encoded once and shared by
//! every viewer on it, so a viewer on a slow link gets a lower rung instead of freezing.
//!
//! ```toml
//! [encode]
//! bitrate = 2000
//! ladder = [{ width = 640, height = 360, bitrate = 700 }, { width = 320, height = 180, bitrate = 200 }]
//! # or: ladder = "auto"   (½ and ¼ of the size at about 35 % and 10 % of the bitrate)
//! ```

use serde::{Deserialize, Deserializer};

/// One encoding of the ladder: its size and bitrate (kbit/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    pub width: u32,
    pub height: u32,
    pub bitrate: u32,
}

impl Rung {
    /// `WIDTHxHEIGHT`, how the API and events name a rung.
    pub fn label(&self) -> String {
        format!("{}x{}", self.width, self.height)
    }
}

/// The rungs below the top one (the encode's own size and bitrate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ladder {
    /// Half and quarter size at 35 % and 10 % of the bitrate.
    Auto,
    Rungs(Vec<Rung>),
}

/// Rungs below the top a ladder may have.
pub const MAX_LOWER_RUNGS: usize = 4;

impl Ladder {
    /// Every rung, top first.
    pub fn rungs(&self, top: Rung) -> Vec<Rung> {
        let mut all = vec![top];
        match self {
            Ladder::Auto => {
                for (div, percent) in [(2, 35), (4, 10)] {
                    let even = |v: u32| (v / div) & !1;
                    all.push(Rung {
                        width: even(top.width),
                        height: even(top.height),
                        bitrate: top.bitrate * percent / 100,
                    });
                }
            }
            Ladder::Rungs(lower) => all.extend(lower.iter().copied()),
        }
        all
    }
}

/// Whether the rungs (top first) make a ladder: each smaller in both dimensions and bitrate
/// than the one above, even sizes of at least 16, bitrates of at least 16 kbit/s.
pub fn check(rungs: &[Rung]) -> Result<(), String> {
    if rungs.len() < 2 {
        return Err("a ladder needs at least one rung below the top".into());
    }
    if rungs.len() - 1 > MAX_LOWER_RUNGS {
        return Err(format!(
            "a ladder has at most {MAX_LOWER_RUNGS} rungs below the top; this one has {}",
            rungs.len() - 1
        ));
    }
    for (i, pair) in rungs.windows(2).enumerate() {
        let (above, r) = (pair[0], pair[1]);
        let what = format!("rung {} ({}, {} kbit/s)", i + 1, r.label(), r.bitrate);
        if r.width < 16 || r.height < 16 || r.width % 2 != 0 || r.height % 2 != 0 {
            return Err(format!(
                "{what}: width and height must be even numbers of at least 16"
            ));
        }
        if r.bitrate < 16 {
            return Err(format!("{what}: bitrate must be at least 16 kbit/s"));
        }
        let above_name = if i == 0 {
            format!("the top ({}, {} kbit/s)", above.label(), above.bitrate)
        } else {
            format!("rung {i} ({}, {} kbit/s)", above.label(), above.bitrate)
        };
        if r.width >= above.width || r.height >= above.height || r.bitrate >= above.bitrate {
            return Err(format!(
                "{what} must be smaller in width, height and bitrate than {above_name}"
            ));
        }
    }
    Ok(())
}

impl<'de> Deserialize<'de> for Ladder {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Ladder;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("\"auto\" or a list of { width, height, bitrate }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ladder, E> {
                match v {
                    "auto" => Ok(Ladder::Auto),
                    other => Err(E::custom(format!(
                        "ladder `{other}`: use \"auto\" or a list of {{ width, height, bitrate }}"
                    ))),
                }
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Ladder, A::Error> {
                let mut rungs = Vec::new();
                while let Some(r) = seq.next_element::<Rung>()? {
                    rungs.push(r);
                }
                Ok(Ladder::Rungs(rungs))
            }
        }
        d.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOP: Rung = Rung {
        width: 1280,
        height: 720,
        bitrate: 2000,
    };

    #[test]
    fn auto_halves_and_quarters() {
        let r = Ladder::Auto.rungs(TOP);
        let labels: Vec<_> = r.iter().map(|r| (r.label(), r.bitrate)).collect();
        assert_eq!(
            labels,
            [
                ("1280x720".to_string(), 2000),
                ("640x360".to_string(), 700),
                ("320x180".to_string(), 200)
            ]
        );
        assert_eq!(check(&r), Ok(()));
        // Odd halves are rounded down to even.
        let odd = Ladder::Auto.rungs(Rung {
            width: 1910,
            height: 1070,
            bitrate: 1000,
        });
        assert_eq!((odd[1].width, odd[1].height), (954, 534));
        assert_eq!((odd[2].width, odd[2].height), (476, 266));
    }

    #[test]
    fn rungs_must_shrink() {
        let r = |width, height, bitrate| Rung {
            width,
            height,
            bitrate,
        };
        let bigger = check(&[TOP, r(1280, 360, 700)]).unwrap_err();
        assert!(bigger.contains("rung 1 (1280x360, 700 kbit/s)"), "{bigger}");
        assert!(
            bigger.contains("the top (1280x720, 2000 kbit/s)"),
            "{bigger}"
        );
        let out_of_order = check(&[TOP, r(640, 360, 700), r(320, 180, 900)]).unwrap_err();
        assert!(out_of_order.contains("than rung 1"), "{out_of_order}");
        assert!(
            check(&[TOP, r(641, 360, 700)])
                .unwrap_err()
                .contains("even")
        );
        assert!(
            check(&[TOP, r(640, 360, 8)])
                .unwrap_err()
                .contains("16 kbit/s")
        );
        assert!(check(&[TOP]).is_err());
        let many: Vec<Rung> = std::iter::once(TOP)
            .chain((1..=5).map(|i| r(1280 - 200 * i, 720 - 100 * i, 2000 - 300 * i)))
            .collect();
        assert!(check(&many).unwrap_err().contains("at most 4"));
    }
}
