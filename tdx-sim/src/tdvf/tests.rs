use proptest::prelude::*;
use std::vec::Vec;

use super::*;
use crate::testing::{IMAGE_LEN, RawSection, SMALL_TDVF, debian_ovmf, tdvf_image};

fn section_error(sections: &[RawSection]) -> TdvfError {
    TdvfMetadata::parse(&tdvf_image(sections).bytes).unwrap_err()
}

fn with(index: usize, change: impl FnOnce(&mut RawSection)) -> Vec<RawSection> {
    let mut sections = SMALL_TDVF.to_vec();
    change(&mut sections[index]);
    sections
}

#[test]
fn debian_ovmf_has_exactly_the_six_sections_of_tdvf_facts() {
    let Some(image) = debian_ovmf() else { return };
    let metadata = TdvfMetadata::parse(&image).expect("Debian's OVMF.fd is a TDVF");
    assert_eq!(metadata.descriptor_offset, image.len() - 0x840);
    let got: Vec<_> = metadata
        .sections()
        .iter()
        .map(|s| {
            (
                s.data_offset,
                s.raw_size,
                s.gpa,
                s.memory_size,
                s.section_type,
                s.attributes.0,
            )
        })
        .collect();
    use SectionType::*;
    let expected = [
        (
            0x20000,
            0x1e0000,
            0xffe2_0000,
            0x1e0000,
            Bfv,
            SectionAttributes::MR_EXTEND,
        ),
        (0, 0x20000, 0xffe0_0000, 0x20000, Cfv, 0),
        (0, 0, 0x81_0000, 0x10000, TempMem, 0),
        (0, 0, 0x80_b000, 0x2000, TempMem, 0),
        (0, 0, 0x80_9000, 0x2000, TdHob, 0),
        (0, 0, 0x80_0000, 0x6000, TempMem, 0),
    ];
    assert_eq!(got, expected);
    assert_eq!(metadata.td_hob().map(|s| s.gpa), Some(0x80_9000));
    metadata.require_qemu_types().unwrap();
}

#[test]
fn debian_ovmf_with_its_metadata_guid_broken_is_refused() {
    let Some(mut image) = debian_ovmf() else {
        return;
    };
    let guid_at = image.len() - 0x840 - 16;
    image[guid_at] ^= 1;
    assert_eq!(TdvfMetadata::parse(&image), Err(TdvfError::NoMetadataGuid));
}

#[test]
fn synthetic_image_parses_and_keeps_metadata_order() {
    let image = tdvf_image(&SMALL_TDVF);
    let metadata = TdvfMetadata::parse(&image.bytes).unwrap();
    assert_eq!(metadata.descriptor_offset, image.descriptor);
    let gpas: Vec<u64> = metadata.sections().iter().map(|s| s.gpa).collect();
    assert_eq!(gpas, SMALL_TDVF.map(|s| s.gpa));
    let bfv = metadata.sections()[0];
    assert_eq!(bfv.data(&image.bytes), &image.bytes[0x4000..0xe000]);
    assert!(bfv.attributes.mr_extend() && !bfv.attributes.page_aug());
}

#[test]
fn footer_table_walk_skips_other_entries_and_reports_missing_ones() {
    let image = tdvf_image(&SMALL_TDVF);
    let data = footer_table_find(&image.bytes, &TDX_METADATA_OFFSET_GUID)
        .unwrap()
        .unwrap();
    assert_eq!(data.len(), 4);
    let other = footer_table_find(&image.bytes, &Guid([0x5a; 16]))
        .unwrap()
        .unwrap();
    assert_eq!(other.len(), 6);
    assert_eq!(footer_table_find(&image.bytes, &Guid([1; 16])), Ok(None));
}

#[test]
fn hostile_footers_are_typed_errors() {
    let base = tdvf_image(&SMALL_TDVF);
    assert_eq!(
        TdvfMetadata::parse(&base.bytes[..4095]),
        Err(TdvfError::ImageTooSmall)
    );
    let footer = IMAGE_LEN - 0x30;

    let mut image = base.bytes.clone();
    image[footer] ^= 0xff;
    assert_eq!(TdvfMetadata::parse(&image), Err(TdvfError::NoFooterTable));

    for total in [0u16, 17, 0xffff] {
        let mut image = base.bytes.clone();
        image[footer - 2..footer].copy_from_slice(&total.to_le_bytes());
        if total == 0xffff {
            // Fits in the image: the walk then meets the patterned bytes as entries.
            assert!(TdvfMetadata::parse(&image).is_err());
        } else {
            assert_eq!(
                TdvfMetadata::parse(&image),
                Err(TdvfError::BadTableLength(total))
            );
        }
    }
    // A zero-length entry (the loop QEMU guards against) and one longer than the table.
    for length in [0u16, 17, 200] {
        let mut image = base.bytes.clone();
        image[footer - 20..footer - 18].copy_from_slice(&length.to_le_bytes());
        assert!(matches!(
            TdvfMetadata::parse(&image),
            Err(TdvfError::BadEntryLength { length: l, .. }) if l == length
        ));
    }
    // An offset entry with no data.
    let mut image = base.bytes.clone();
    image[footer - 20..footer - 18].copy_from_slice(&18u16.to_le_bytes());
    image[footer - 2..footer].copy_from_slice(&36u16.to_le_bytes());
    assert_eq!(
        TdvfMetadata::parse(&image),
        Err(TdvfError::ShortMetadataOffset)
    );
    // No offset entry at all.
    let mut image = base.bytes.clone();
    image[footer - 18] ^= 1;
    assert_eq!(
        TdvfMetadata::parse(&image),
        Err(TdvfError::NoMetadataOffset)
    );
}

#[test]
fn metadata_offsets_outside_the_image_are_refused() {
    let base = tdvf_image(&SMALL_TDVF);
    for from_end in [
        0u32,
        8,
        15,
        IMAGE_LEN as u32 - 8,
        IMAGE_LEN as u32,
        u32::MAX,
    ] {
        let mut image = base.bytes.clone();
        image[base.offset_entry..base.offset_entry + 4].copy_from_slice(&from_end.to_le_bytes());
        assert_eq!(
            TdvfMetadata::parse(&image),
            Err(TdvfError::MetadataOutsideImage(from_end)),
            "offset {from_end:#x}"
        );
    }
}

#[test]
fn descriptor_fields_are_checked() {
    let base = tdvf_image(&SMALL_TDVF);
    let d = base.descriptor;
    let patch = |at: usize, value: u32| {
        let mut image = base.bytes.clone();
        image[d + at..d + at + 4].copy_from_slice(&value.to_le_bytes());
        TdvfMetadata::parse(&image)
    };
    assert_eq!(
        patch(0, 0x4656_4454 ^ 1),
        Err(TdvfError::BadSignature(0x4656_4455))
    );
    assert_eq!(patch(8, 2), Err(TdvfError::BadVersion(2)));
    assert_eq!(
        patch(12, 3),
        Err(TdvfError::BadLength {
            length: 176,
            expected: 112
        })
    );
    assert_eq!(
        patch(4, 177),
        Err(TdvfError::BadLength {
            length: 177,
            expected: 176
        })
    );
    assert_eq!(
        patch(4, u32::MAX),
        Err(TdvfError::BadLength {
            length: u32::MAX,
            expected: 176
        })
    );
    // A huge count cannot overflow the length computation.
    assert!(matches!(
        patch(12, u32::MAX),
        Err(TdvfError::BadLength { .. })
    ));

    let one = [SMALL_TDVF[0]];
    assert_eq!(section_error(&one), TdvfError::TooFewSections(1));
    let many: Vec<RawSection> = (0..MAX_SECTIONS as u64 + 1)
        .map(|i| RawSection::new(0, 0, 0x100_0000 + i * 0x1000, 0x1000, 3, 0))
        .collect();
    assert_eq!(
        section_error(&many),
        TdvfError::TooManySections(MAX_SECTIONS as u32 + 1)
    );
}

#[test]
fn section_entries_follow_qemus_checks() {
    type Case = (usize, fn(&mut RawSection), SectionError);
    let cases: [Case; 12] = [
        (0, |s| s.section_type = 7, SectionError::UnknownType(7)),
        (
            0,
            |s| s.memory_size = 0x9000,
            SectionError::RawSizeExceedsMemory,
        ),
        (0, |s| s.gpa += 0x800, SectionError::AddressUnaligned),
        (2, |s| s.memory_size = 0x6001, SectionError::SizeUnaligned),
        (2, |s| s.memory_size = 0, SectionError::Empty),
        (2, |s| s.gpa = !0xfff, SectionError::AddressOutOfRange),
        (
            2,
            |s| s.gpa = GPA_LIMIT - 0x1000,
            SectionError::AddressOutOfRange,
        ),
        (
            0,
            |s| s.data_offset = 0x8000,
            SectionError::DataOutsideImage,
        ),
        (1, |s| s.raw_size = 0, SectionError::NoData),
        (3, |s| s.raw_size = 0x1000, SectionError::UnexpectedData),
        (2, |s| s.attributes = 4, SectionError::UnknownAttributes),
        (
            3,
            |s| s.attributes = 1,
            SectionError::AttributesInvalidForType,
        ),
    ];
    for (index, change, error) in cases {
        assert_eq!(
            section_error(&with(index, change)),
            TdvfError::Section { index, error },
            "{error:?}"
        );
    }
    // PAGE.AUG is for memory without content, and never together with MR.EXTEND.
    assert_eq!(
        section_error(&with(1, |s| s.attributes = SectionAttributes::PAGE_AUG)),
        TdvfError::Section {
            index: 1,
            error: SectionError::AttributesInvalidForType
        }
    );
    assert_eq!(
        section_error(&with(2, |s| s.attributes = 3)),
        TdvfError::Section {
            index: 2,
            error: SectionError::AttributesInvalidForType
        }
    );
    let aug_temp = with(2, |s| s.attributes = SectionAttributes::PAGE_AUG);
    assert!(
        TdvfMetadata::parse(&tdvf_image(&aug_temp).bytes)
            .unwrap()
            .sections()[2]
            .attributes
            .page_aug()
    );
}

#[test]
fn overlaps_and_section_counts_are_checked() {
    let overlap = with(4, |s| s.gpa = 0x80_a000);
    assert_eq!(
        section_error(&overlap),
        TdvfError::Overlap {
            first: 3,
            second: 4
        }
    );
    let touching = with(4, |s| s.gpa = 0x80_b000);
    assert!(TdvfMetadata::parse(&tdvf_image(&touching).bytes).is_ok());

    let no_bfv = with(0, |s| {
        s.section_type = 1;
        s.attributes = 0;
    });
    assert_eq!(section_error(&no_bfv), TdvfError::NoBfv);
    let no_hob = with(3, |s| s.section_type = 3);
    assert_eq!(section_error(&no_hob), TdvfError::NoTdHob);
    let two_hobs = with(2, |s| s.section_type = 2);
    assert_eq!(section_error(&two_hobs), TdvfError::SeveralTdHobs);
    // PERM_MEM replaces the HOB (td-shim), but QEMU loads neither it nor a TD without a HOB.
    let perm = with(3, |s| {
        s.section_type = 4;
        s.attributes = SectionAttributes::PAGE_AUG;
    });
    let metadata = TdvfMetadata::parse(&tdvf_image(&perm).bytes).unwrap();
    assert_eq!(
        metadata.require_qemu_types(),
        Err(TdvfError::UnsupportedByQemu {
            index: 3,
            section_type: SectionType::PermMem
        })
    );
    assert_eq!(metadata.td_hob(), None);
}

fn arbitrary_section() -> impl Strategy<Value = RawSection> {
    let small_page = (0u64..0x40).prop_map(|p| p * 0x1000);
    (
        prop_oneof![0u32..0x10000, any::<u32>()],
        prop_oneof![Just(0u32), 0u32..0x10000, any::<u32>()],
        prop_oneof![small_page.clone(), any::<u64>()],
        prop_oneof![small_page, any::<u64>()],
        0u32..9,
        0u32..5,
    )
        .prop_map(|(o, r, g, m, t, a)| RawSection::new(o, r, g, m, t, a))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the section fields, parsing ends in a typed error or in sections that keep
    /// every promise the loader relies on.
    #[test]
    fn any_section_fields_parse_safely(sections in proptest::collection::vec(arbitrary_section(), 0..8)) {
        let image = tdvf_image(&sections);
        if let Ok(metadata) = TdvfMetadata::parse(&image.bytes) {
            let parsed = metadata.sections();
            prop_assert_eq!(parsed.len(), sections.len());
            for (i, s) in parsed.iter().enumerate() {
                prop_assert!(s.gpa % 4096 == 0 && s.memory_size % 4096 == 0 && s.memory_size > 0);
                prop_assert!(u64::from(s.raw_size) <= s.memory_size);
                prop_assert!(s.end() <= GPA_LIMIT);
                prop_assert_eq!(s.data(&image.bytes).len(), s.raw_size as usize);
                for other in &parsed[..i] {
                    prop_assert!(s.end() <= other.gpa || other.end() <= s.gpa);
                }
            }
            prop_assert!(parsed.iter().any(|s| s.section_type == SectionType::Bfv));
        }
    }

    /// Random corruption of the bytes around the metadata and footer never panics.
    #[test]
    fn corrupted_images_never_panic(edits in proptest::collection::vec((0usize..0x1100, any::<u8>()), 1..16)) {
        let mut image = tdvf_image(&SMALL_TDVF).bytes;
        for (back, value) in edits {
            let at = IMAGE_LEN - 1 - back;
            image[at] = value;
        }
        let _ = TdvfMetadata::parse(&image);
    }

    /// Truncated images never panic.
    #[test]
    fn truncated_images_never_panic(cut in 0usize..IMAGE_LEN) {
        let image = tdvf_image(&SMALL_TDVF).bytes;
        let _ = TdvfMetadata::parse(&image[cut..]);
        let _ = TdvfMetadata::parse(&image[..cut]);
    }
}
