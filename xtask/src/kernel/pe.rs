//! ELF (static PIE) to PE32+ EFI application, with the `object` crate.
//!
//! The kernel is linked at address 0 with its first segment at 0x1000 (`metal/image.ld`), so an ELF
//! virtual address is a PE relative virtual address and the first page holds the PE headers.
//! Each PT_LOAD becomes one page-aligned section with the segment's permissions; each
//! R_X86_64_RELATIVE becomes a DIR64 base relocation, with the addend stored at the relocated
//! location (the PE loader adds the load address to what it finds there).

use object::elf::{self, FileHeader64};
use object::endian::LittleEndian;
use object::pe;
use object::read::elf::{FileHeader, ProgramHeader, Rela, SectionHeader};
use object::write::pe::{NtHeaders, Writer};

const PAGE: u64 = 0x1000;
const FILE_ALIGNMENT: u32 = 0x200;

/// One loadable segment, as it becomes a PE section.
struct Segment {
    vaddr: u64,
    memsz: u64,
    data: Vec<u8>,
    flags: u32,
}

/// What the conversion produced, for the log and for checks.
#[derive(Debug, PartialEq, Eq)]
pub struct PeSummary {
    pub sections: Vec<(String, u32, u32, u32)>, // name, rva, virtual size, characteristics
    pub relocations: usize,
    pub entry: u32,
}

/// Converts the kernel ELF in `elf_data` into a PE32+ EFI application.
pub fn elf_to_pe(elf_data: &[u8]) -> Result<(Vec<u8>, PeSummary), String> {
    let endian = LittleEndian;
    let header = FileHeader64::<LittleEndian>::parse(elf_data).map_err(|e| format!("ELF: {e}"))?;
    if header.e_machine(endian) != elf::EM_X86_64 || header.e_type(endian) != elf::ET_DYN {
        return Err("ELF: not an x86-64 position-independent executable".into());
    }
    let entry = header.e_entry(endian);

    let mut segments = Vec::new();
    for ph in header
        .program_headers(endian, elf_data)
        .map_err(|e| format!("ELF: {e}"))?
    {
        if ph.p_type(endian) != elf::PT_LOAD {
            continue;
        }
        let vaddr = ph.p_vaddr(endian);
        if vaddr % PAGE != 0 || vaddr < PAGE {
            return Err(format!(
                "segment at {vaddr:#x} is not page aligned above the headers"
            ));
        }
        let data = ph
            .data(endian, elf_data)
            .map_err(|()| format!("segment at {vaddr:#x}: bad file range"))?
            .to_vec();
        segments.push(Segment {
            vaddr,
            memsz: ph.p_memsz(endian),
            data,
            flags: ph.p_flags(endian).0,
        });
    }
    segments.sort_by_key(|s| s.vaddr);
    for pair in segments.windows(2) {
        if pair[0].vaddr + pair[0].memsz > pair[1].vaddr {
            return Err(format!(
                "segments at {:#x} and {:#x} overlap",
                pair[0].vaddr, pair[1].vaddr
            ));
        }
    }

    let mut relocations = relative_relocations(header, elf_data)?;
    relocations.sort_unstable();
    for &(offset, addend) in &relocations {
        let segment = segments
            .iter_mut()
            .find(|s| s.vaddr <= offset && offset + 8 <= s.vaddr + s.data.len() as u64)
            .ok_or_else(|| format!("relocation at {offset:#x} outside initialized data"))?;
        let at = (offset - segment.vaddr) as usize;
        segment.data[at..at + 8].copy_from_slice(&addend.to_le_bytes());
    }

    let mut out = Vec::new();
    let mut writer = Writer::new(true, PAGE as u32, FILE_ALIGNMENT, &mut out);
    writer.reserve_dos_header_and_stub();
    writer.reserve_nt_headers(pe::IMAGE_NUMBEROF_DIRECTORY_ENTRIES);
    let has_relocations = !relocations.is_empty();
    writer.reserve_section_headers((segments.len() + usize::from(has_relocations)) as u16);
    let mut ranges = Vec::new();
    for segment in &segments {
        if (writer.virtual_len() as u64) > segment.vaddr {
            return Err(format!(
                "segment at {:#x} overlaps the PE headers",
                segment.vaddr
            ));
        }
        writer.reserve_virtual_until(segment.vaddr as u32);
        let (name, characteristics) = section_kind(segment.flags);
        let range = writer.reserve_section(
            name,
            characteristics,
            segment.memsz as u32,
            segment.data.len() as u32,
        );
        if u64::from(range.virtual_address) != segment.vaddr {
            return Err(format!(
                "section placed at {:#x}, not {:#x}",
                range.virtual_address, segment.vaddr
            ));
        }
        ranges.push(range);
    }
    for &(offset, _) in &relocations {
        writer.add_reloc(offset as u32, pe::IMAGE_REL_BASED_DIR64);
    }
    if has_relocations {
        writer.reserve_reloc_section();
    }

    writer
        .write_dos_header_and_stub()
        .map_err(|e| format!("PE: {e}"))?;
    writer.write_nt_headers(NtHeaders {
        machine: pe::IMAGE_FILE_MACHINE_AMD64,
        time_date_stamp: 0,
        characteristics: pe::IMAGE_FILE_EXECUTABLE_IMAGE | pe::IMAGE_FILE_LARGE_ADDRESS_AWARE,
        major_linker_version: 0,
        minor_linker_version: 0,
        address_of_entry_point: entry as u32,
        image_base: 0,
        major_operating_system_version: 0,
        minor_operating_system_version: 0,
        major_image_version: 0,
        minor_image_version: 0,
        major_subsystem_version: 0,
        minor_subsystem_version: 0,
        subsystem: pe::IMAGE_SUBSYSTEM_EFI_APPLICATION,
        dll_characteristics: pe::IMAGE_DLLCHARACTERISTICS_DYNAMIC_BASE
            | pe::IMAGE_DLLCHARACTERISTICS_HIGH_ENTROPY_VA
            | pe::IMAGE_DLLCHARACTERISTICS_NX_COMPAT,
        size_of_stack_reserve: 0,
        size_of_stack_commit: 0,
        size_of_heap_reserve: 0,
        size_of_heap_commit: 0,
    });
    writer.write_section_headers();
    for (segment, range) in segments.iter().zip(&ranges) {
        writer.write_section(range.file_offset, &segment.data);
    }
    writer.write_reloc_section();

    let summary = summarize(&out)?;
    if summary.entry as u64 != entry || summary.relocations < relocations.len() {
        return Err("PE: the written image does not read back as written".into());
    }
    Ok((out, summary))
}

/// Every dynamic relocation as (offset, addend); anything but R_X86_64_RELATIVE is an error,
/// because a PE base relocation can only add the load address.
fn relative_relocations(
    header: &FileHeader64<LittleEndian>,
    data: &[u8],
) -> Result<Vec<(u64, u64)>, String> {
    let endian = LittleEndian;
    let sections = header
        .section_headers(endian, data)
        .map_err(|e| format!("ELF: {e}"))?;
    let mut out = Vec::new();
    for section in sections {
        if !section.sh_flags(endian).contains(elf::SHF_ALLOC) {
            continue;
        }
        let Some((relas, _)) = section
            .rela(endian, data)
            .map_err(|e| format!("ELF: {e}"))?
        else {
            continue;
        };
        for rela in relas {
            let kind = rela.r_type(endian, false);
            if kind != elf::R_X86_64_RELATIVE {
                return Err(format!(
                    "unsupported relocation type {} at {:#x}",
                    kind.0,
                    rela.r_offset(endian)
                ));
            }
            out.push((rela.r_offset(endian), rela.r_addend(endian) as u64));
        }
    }
    Ok(out)
}

/// The PE section name and characteristics for an ELF segment's permissions.
fn section_kind(flags: u32) -> ([u8; 8], pe::SectionFlags) {
    let executable = flags & elf::PF_X.0 != 0;
    let writable = flags & elf::PF_W.0 != 0;
    if executable {
        (
            *b".text\0\0\0",
            pe::IMAGE_SCN_CNT_CODE | pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_MEM_READ,
        )
    } else if writable {
        (
            *b".data\0\0\0",
            pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ | pe::IMAGE_SCN_MEM_WRITE,
        )
    } else {
        (
            *b".rdata\0\0",
            pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ,
        )
    }
}

/// Reads a PE32+ image back: its sections, base relocation count and entry point.
pub fn summarize(image: &[u8]) -> Result<PeSummary, String> {
    use object::read::pe::{ImageNtHeaders, PeFile64};
    let file = PeFile64::parse(image).map_err(|e| format!("PE readback: {e}"))?;
    let le = LittleEndian;
    let nt = file.nt_headers();
    let optional = nt.optional_header();
    use object::read::pe::ImageOptionalHeader;
    let entry = optional.address_of_entry_point();
    let sections = file
        .section_table()
        .iter()
        .map(|s| {
            let name = String::from_utf8_lossy(&s.name)
                .trim_end_matches('\0')
                .to_string();
            (
                name,
                s.virtual_address.get(le),
                s.virtual_size.get(le),
                s.characteristics.get(le).0,
            )
        })
        .collect();
    let mut relocations = 0;
    if let Some(mut blocks) = file
        .data_directories()
        .relocation_blocks(image, &file.section_table())
        .map_err(|e| format!("PE readback: {e}"))?
    {
        while let Some(block) = blocks.next().map_err(|e| format!("PE readback: {e}"))? {
            relocations += block.filter(|r| r.typ == pe::IMAGE_REL_BASED_DIR64).count();
        }
    }
    let _ = nt.file_header();
    Ok(PeSummary {
        sections,
        relocations,
        entry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: u64 = 0x1000;
    const DATA: u64 = 0x2000;
    const RELA_OFFSET: u64 = 0x2010;
    const SECTION_HEADERS: u64 = 0x2028;

    fn put(out: &mut [u8], at: u64, bytes: &[u8]) {
        out[at as usize..at as usize + bytes.len()].copy_from_slice(bytes);
    }

    /// A minimal static PIE: R+X text at 0x1000, R+W data (+bss) at `data_vaddr`, and one
    /// dynamic relocation of `kind` at data + 8 with addend 0x1004.
    fn tiny_elf(kind: u32, data_vaddr: u64) -> Vec<u8> {
        let mut elf = vec![0u8; (SECTION_HEADERS + 2 * 64) as usize];
        put(&mut elf, 0, &[0x7f, b'E', b'L', b'F', 2, 1, 1]);
        put(&mut elf, 16, &3u16.to_le_bytes()); // ET_DYN
        put(&mut elf, 18, &62u16.to_le_bytes()); // EM_X86_64
        put(&mut elf, 20, &1u32.to_le_bytes());
        put(&mut elf, 24, &TEXT.to_le_bytes()); // entry
        put(&mut elf, 32, &64u64.to_le_bytes()); // phoff
        put(&mut elf, 40, &SECTION_HEADERS.to_le_bytes());
        put(&mut elf, 52, &64u16.to_le_bytes());
        put(&mut elf, 54, &56u16.to_le_bytes());
        put(&mut elf, 56, &2u16.to_le_bytes());
        put(&mut elf, 58, &64u16.to_le_bytes());
        put(&mut elf, 60, &2u16.to_le_bytes());
        // (type, flags, offset, vaddr, filesz, memsz)
        let segments = [
            (1u32, 5u32, TEXT, TEXT, 0x10u64, 0x10u64),
            (1, 6, DATA, data_vaddr, 0x10, 0x100),
        ];
        for (i, (kind, flags, offset, vaddr, filesz, memsz)) in segments.into_iter().enumerate() {
            let at = 64 + 56 * i as u64;
            put(&mut elf, at, &kind.to_le_bytes());
            put(&mut elf, at + 4, &flags.to_le_bytes());
            put(&mut elf, at + 8, &offset.to_le_bytes());
            put(&mut elf, at + 16, &vaddr.to_le_bytes());
            put(&mut elf, at + 24, &vaddr.to_le_bytes());
            put(&mut elf, at + 32, &filesz.to_le_bytes());
            put(&mut elf, at + 40, &memsz.to_le_bytes());
            put(&mut elf, at + 48, &0x1000u64.to_le_bytes());
        }
        put(&mut elf, TEXT, &[0xcc; 16]);
        put(&mut elf, RELA_OFFSET, &(data_vaddr + 8).to_le_bytes());
        put(&mut elf, RELA_OFFSET + 8, &u64::from(kind).to_le_bytes());
        put(&mut elf, RELA_OFFSET + 16, &0x1004u64.to_le_bytes());
        let rela = SECTION_HEADERS + 64;
        put(&mut elf, rela + 4, &4u32.to_le_bytes()); // SHT_RELA
        put(&mut elf, rela + 8, &2u64.to_le_bytes()); // SHF_ALLOC
        put(&mut elf, rela + 24, &RELA_OFFSET.to_le_bytes());
        put(&mut elf, rela + 32, &24u64.to_le_bytes());
        put(&mut elf, rela + 48, &8u64.to_le_bytes());
        put(&mut elf, rela + 56, &24u64.to_le_bytes());
        elf
    }

    #[test]
    fn segments_become_sections_with_their_permissions_and_relocations() {
        let (image, summary) = elf_to_pe(&tiny_elf(8, DATA)).expect("converts");
        assert_eq!(summary.entry, 0x1000);
        assert_eq!(summary.relocations, 1);
        let text = (pe::IMAGE_SCN_CNT_CODE | pe::IMAGE_SCN_MEM_EXECUTE | pe::IMAGE_SCN_MEM_READ).0;
        let data =
            (pe::IMAGE_SCN_CNT_INITIALIZED_DATA | pe::IMAGE_SCN_MEM_READ | pe::IMAGE_SCN_MEM_WRITE)
                .0;
        assert_eq!(summary.sections[0], (".text".into(), 0x1000, 0x10, text));
        assert_eq!(summary.sections[1], (".data".into(), 0x2000, 0x100, data));
        assert_eq!(summary.sections[2].0, ".reloc");
        // The relocated word holds the addend (the link-time address, image base 0).
        let file = object::read::pe::PeFile64::parse(&*image).expect("parses");
        let data_section = file.section_table().iter().nth(1).expect("data section");
        let raw = data_section.pointer_to_raw_data.get(LittleEndian) as usize;
        assert_eq!(image[raw + 8..raw + 16], 0x1004u64.to_le_bytes());
    }

    #[test]
    fn a_symbolic_relocation_is_refused() {
        let error =
            elf_to_pe(&tiny_elf(1, DATA)).expect_err("R_X86_64_64 cannot be a base relocation");
        assert!(error.contains("unsupported relocation type 1"), "{error}");
    }

    #[test]
    fn an_unaligned_segment_is_refused() {
        let error =
            elf_to_pe(&tiny_elf(8, DATA + 0x10)).expect_err("segments must be page aligned");
        assert!(error.contains("not page aligned"), "{error}");
    }
}
