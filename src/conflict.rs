//! Conflicted copies: the name under which a version that lost a race is kept, and this device's name in
//! it.

use std::time::SystemTime;

/// This machine's host name, the default device name in conflicted copies.
pub fn default_device_name() -> String {
    crate::platform::host_name().unwrap_or_else(|| "this device".to_owned())
}

/// "STEM (conflicted copy DEVICE YYYY-MM-DD HHMMSS).EXT" (UTC), with " 2", " 3"... inside the parentheses
/// while `taken`, the stem shortened so that the name fits in 255 bytes.
pub fn conflict_name(name: &str, device: &str, when: SystemTime, taken: impl Fn(&str) -> bool) -> String {
    let (stem, extension) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot <= 16 => (&name[..dot], &name[dot..]),
        _ => (name, ""),
    };
    let device: String = device.chars().filter(|c| *c != '/' && !c.is_control()).take(64).collect();
    let seconds = when.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let utc = i64::try_from(seconds)
        .ok()
        .and_then(|seconds| time::OffsetDateTime::from_unix_timestamp(seconds).ok())
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let stamp = format!(
        "{:04}-{:02}-{:02} {:02}{:02}{:02}",
        utc.year(),
        u8::from(utc.month()),
        utc.day(),
        utc.hour(),
        utc.minute(),
        utc.second()
    );
    for attempt in 1u32.. {
        let number = if attempt == 1 { String::new() } else { format!(" {attempt}") };
        let suffix = format!(" (conflicted copy {device} {stamp}{number}){extension}");
        let mut stem_end = stem.len().min(255usize.saturating_sub(suffix.len()));
        while !stem.is_char_boundary(stem_end) {
            stem_end -= 1;
        }
        let candidate = format!("{}{suffix}", &stem[..stem_end]);
        if !taken(&candidate) {
            return candidate;
        }
    }
    unreachable!("some number is free")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn conflict_names_keep_the_extension_fit_255_bytes_and_count_up() {
        // 2026-11-22 13:04:05 UTC.
        let when = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_352_645);
        let name = conflict_name("report.final.odt", "laptop", when, |_| false);
        assert_eq!(name, "report.final (conflicted copy laptop 2026-11-22 130405).odt");
        assert_eq!(
            conflict_name(".bashrc", "pc/1", when, |_| false),
            ".bashrc (conflicted copy pc1 2026-11-22 130405)"
        );
        let second =
            conflict_name("a.txt", "pc", when, |candidate| candidate == "a (conflicted copy pc 2026-11-22 130405).txt");
        assert_eq!(second, "a (conflicted copy pc 2026-11-22 130405 2).txt");
        let long = format!("{}.txt", "é".repeat(127));
        let fitted = conflict_name(&long, "pc", when, |_| false);
        assert!(fitted.len() <= 255 && fitted.ends_with("130405).txt") && fitted.starts_with('é'), "{fitted}");
        // A leap day and the epoch.
        let leap = SystemTime::UNIX_EPOCH + Duration::from_secs(11_016 * 86_400 + 59);
        assert!(conflict_name("x", "pc", leap, |_| false).ends_with("2000-02-29 000059)"));
        let epoch = conflict_name("x", "pc", SystemTime::UNIX_EPOCH, |_| false);
        assert_eq!(epoch, "x (conflicted copy pc 1970-01-01 000000)");
    }
}
