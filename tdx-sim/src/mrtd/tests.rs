use sha2::{Digest, Sha256, Sha384};
use std::vec::Vec;

use super::*;
use crate::tdvf::TdvfMetadata;
use crate::testing::{RawSection, SMALL_TDVF, debian_ovmf, tdvf_image};

/// The byte stream the TDX module hashes, written out literally from the ABI description for
/// raw section entries (no use of the parser or of `Mrtd`).
fn hand_stream(image: &[u8], sections: &[RawSection]) -> Vec<u8> {
    let mut stream = Vec::new();
    for s in sections {
        for page in 0..s.memory_size / 4096 {
            let gpa = s.gpa + page * 4096;
            stream.extend_from_slice(b"MEM.PAGE.ADD\0\0\0\0");
            stream.extend_from_slice(&gpa.to_le_bytes());
            stream.extend_from_slice(&[0u8; 104]);
            if s.attributes & 1 == 0 {
                continue;
            }
            for chunk in 0..16u64 {
                stream.extend_from_slice(b"MR.EXTEND\0\0\0\0\0\0\0");
                stream.extend_from_slice(&(gpa + chunk * 256).to_le_bytes());
                stream.extend_from_slice(&[0u8; 104]);
                for i in 0..256u64 {
                    let offset = page * 4096 + chunk * 256 + i;
                    let byte = if offset < u64::from(s.raw_size) {
                        image[s.data_offset as usize + offset as usize]
                    } else {
                        0
                    };
                    stream.push(byte);
                }
            }
        }
    }
    stream
}

fn measure(sections: &[RawSection]) -> ([u8; 48], [u8; 48]) {
    let image = tdvf_image(sections).bytes;
    let metadata = TdvfMetadata::parse(&image).unwrap();
    let expected: [u8; 48] = Sha384::digest(hand_stream(&image, sections)).into();
    (measure_tdvf(&image, &metadata), expected)
}

#[test]
fn small_tdvf_matches_the_hand_built_stream() {
    let (got, expected) = measure(&SMALL_TDVF);
    assert_eq!(got, expected);
}

#[test]
fn data_past_the_raw_size_is_measured_as_zeros() {
    let mut sections = SMALL_TDVF;
    sections[0].raw_size = 0x1880; // 6 KiB and a bit, in a 40 KiB section
    let (got, expected) = measure(&sections);
    assert_eq!(got, expected);
    let (full, _) = measure(&SMALL_TDVF);
    assert_ne!(got, full);
}

#[test]
fn every_added_gpa_counts_but_only_extended_content_does() {
    let (base, _) = measure(&SMALL_TDVF);
    let mut moved_temp = SMALL_TDVF;
    moved_temp[4].gpa = 0x90_0000;
    assert_ne!(measure(&moved_temp).0, base, "TEMP_MEM GPAs are PAGE.ADDed");
    let mut moved_hob = SMALL_TDVF;
    moved_hob[3].gpa = 0x80_6000;
    assert_ne!(measure(&moved_hob).0, base, "TD_HOB GPAs are PAGE.ADDed");
    let mut aug = SMALL_TDVF;
    aug[4].attributes = 2;
    let image = tdvf_image(&aug).bytes;
    let without: Vec<RawSection> = aug.iter().copied().filter(|s| s.attributes != 2).collect();
    let expected: [u8; 48] = Sha384::digest(hand_stream(&image, &without)).into();
    assert_eq!(
        measure_tdvf(&image, &TdvfMetadata::parse(&image).unwrap()),
        expected
    );

    let image = tdvf_image(&SMALL_TDVF).bytes;
    let metadata = TdvfMetadata::parse(&image).unwrap();
    let mut cfv_changed = image.clone();
    cfv_changed[0x123] ^= 1;
    assert_eq!(
        measure_tdvf(&cfv_changed, &metadata),
        base,
        "CFV content is not measured"
    );
    let mut bfv_changed = image;
    bfv_changed[0x4000 + 0x2345] ^= 1;
    assert_ne!(
        measure_tdvf(&bfv_changed, &metadata),
        base,
        "BFV content is measured"
    );
}

#[test]
fn the_module_refuses_misaligned_gpas() {
    let mut mrtd = Mrtd::new();
    assert_eq!(
        mrtd.page_add(0x1800),
        Err(MrtdError::PageMisaligned(0x1800))
    );
    assert_eq!(
        mrtd.mr_extend(0x1080, &[0; 256]),
        Err(MrtdError::ChunkMisaligned(0x1080))
    );
    // Refused operations leave the measurement as it was.
    assert_eq!(mrtd.finish(), Mrtd::new().finish());
    let empty: [u8; 48] = Sha384::digest([]).into();
    assert_eq!(Mrtd::new().finish(), empty);
}

#[test]
fn single_operations_hash_their_blocks() {
    let mut mrtd = Mrtd::new();
    mrtd.page_add(0xffe2_0000).unwrap();
    mrtd.mr_extend(0xffe2_0100, &[0xa5; 256]).unwrap();
    let mut stream = Vec::new();
    stream.extend_from_slice(b"MEM.PAGE.ADD");
    stream.extend_from_slice(&[0, 0, 0, 0, 0x00, 0x00, 0xe2, 0xff, 0, 0, 0, 0]);
    stream.resize(128, 0);
    stream.extend_from_slice(b"MR.EXTEND");
    stream.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0x00, 0x01, 0xe2, 0xff, 0, 0, 0, 0]);
    stream.resize(256, 0);
    stream.extend_from_slice(&[0xa5; 256]);
    let expected: [u8; 48] = Sha384::digest(&stream).into();
    assert_eq!(mrtd.finish(), expected);
}

fn hex(bytes: &[u8]) -> std::string::String {
    bytes.iter().map(|b| std::format!("{b:02x}")).collect()
}

/// Debian ovmf 2022.11-6+deb12u2's OVMF.fd, identified by its SHA-256, and its MRTD computed
/// with Python's hashlib by a separate script (the sections written out from TDVF-FACTS.md,
/// each page's PAGE.ADD then its sixteen MR.EXTENDs), not by this crate.
const DEBIAN_OVMF_SHA256: &str = "7b456907dd0786d415999e801a1ac4637b8ed4d7cf5378cfc6edbe5e574dd773";
const DEBIAN_OVMF_MRTD: &str = "4c7206f0f483c524f12c366c711e9049030a8d47c471ee5aa9c4999a08de4057fb887fed0744d5631a212967fb231c47";

#[test]
fn debian_ovmf_mrtd_matches_an_independent_computation_and_tracks_the_bfv() {
    let Some(mut image) = debian_ovmf() else {
        return;
    };
    let metadata = TdvfMetadata::parse(&image).unwrap();
    let mrtd = measure_tdvf(&image, &metadata);
    assert_eq!(mrtd, measure_tdvf(&image, &metadata), "stable");
    if hex(&Sha256::digest(&image)) == DEBIAN_OVMF_SHA256 {
        assert_eq!(hex(&mrtd), DEBIAN_OVMF_MRTD);
    } else {
        std::eprintln!("OVMF.fd is not the known Debian build: reference value not compared");
    }
    image[0x20000 + 0x1_2345] ^= 0x80;
    assert_ne!(
        measure_tdvf(&image, &metadata),
        mrtd,
        "one BFV byte changes MRTD"
    );
    image[0x20000 + 0x1_2345] ^= 0x80;
    image[0x1_0000] ^= 0x80;
    assert_eq!(
        measure_tdvf(&image, &metadata),
        mrtd,
        "the CFV (variables) is not measured"
    );
}
