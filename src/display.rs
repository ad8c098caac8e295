//! How quantities read for people, shared by the CLI, the TUI and the engine's messages.

/// Decimal units, as `ls -lh --si` and du's `--si`: 12.3 MB.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_like_du_si() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(62_945_847), "62.9 MB");
        assert_eq!(human_bytes(1_129_233_408), "1.1 GB");
    }
}
