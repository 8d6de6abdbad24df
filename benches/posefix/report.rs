//! Number formatting for the markdown tables.

/// Bytes as megabytes (10^6), to 1 decimal below 100.
pub fn mb(bytes: f64) -> String {
    let v = bytes / 1e6;
    if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// Seconds, 3 significant-ish decimals.
pub fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{s:.3}")
    } else {
        format!("{s:.2}")
    }
}

pub fn ms(s: f64) -> String {
    let v = s * 1e3;
    if v < 10.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.1}")
    }
}

pub fn ratio(r: f64) -> String {
    format!("{r:.2}x")
}

pub fn percent(r: f64) -> String {
    format!("{:.2}%", r * 100.0)
}
