//! The import-table hash of a PE as ClamAV computes it for `.imp`
//! signatures (`libclamav/pe.c`, `hash_imptbl`/`hash_impfns`): for every
//! import descriptor and every imported function, `dll.function` in lower
//! case (the DLL name without a `.dll`/`.ocx`/`.sys` extension, ordinals as
//! ClamAV names them), joined with commas, hashed; the hash's size is the
//! length of that string.

use super::pe::rawaddr;
use super::{ExeError, ExeInfo, Src, le32};

/// Longest DLL or function name read (`PE_MAXNAMESIZE`).
const MAX_NAME: usize = 256;
/// Most import descriptors read (`PE_MAXIMPORTS`).
const MAX_IMPORTS: usize = 1024;
/// Most thunks read over the whole table. ClamAV has no such bound (its
/// per-DLL counter is never incremented); a table with more is refused.
pub const MAX_THUNKS: usize = 1 << 20;

/// Why no import hash was produced.
#[derive(Debug, thiserror::Error)]
pub enum ImpError {
    /// No import directory, or it lies outside the file: ClamAV computes
    /// no hash and reports nothing.
    #[error("no import table")]
    None,
    /// A name ClamAV rejects, or a table it cannot walk: no hash either.
    #[error("malformed import table: {0}")]
    Format(&'static str),
    /// More thunks than [`MAX_THUNKS`]: refused rather than hashed.
    #[error("import table has more than {MAX_THUNKS} entries")]
    TooLarge,
    #[error(transparent)]
    Exe(#[from] ExeError),
}

/// A NUL-terminated name of at most [`MAX_NAME`] bytes at `off`.
fn name_at(src: &Src<'_>, off: u64) -> Result<Vec<u8>, ImpError> {
    let mut v = src.upto(off, MAX_NAME)?;
    if let Some(n) = v.iter().position(|&b| b == 0) {
        v.truncate(n);
    }
    Ok(v)
}

fn valid_fn_name(name: &[u8]) -> bool {
    name.iter()
        .all(|&c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.')
}

/// Feed the import string of a PE32 (ClamAV hashes imports only for PE32;
/// PE32+ files are not import-hashed by `cli_scanpe`) to `sink`, piece by
/// piece; returns its total length.
pub fn import_string(
    src: &Src<'_>,
    info: &ExeInfo,
    mut sink: impl FnMut(&[u8]),
) -> Result<u32, ImpError> {
    let fsize = src.len();
    let (dir_rva, dir_size) = info.import_dir;
    if dir_rva == 0 || dir_size == 0 {
        return Err(ImpError::None);
    }
    let impoff = rawaddr(dir_rva, &info.sections, fsize, info.hdr_size).ok_or(ImpError::None)?;
    if u64::from(impoff) + u64::from(dir_size) > fsize {
        return Err(ImpError::None);
    }
    let mut left = dir_size as usize;
    let mut desc_off = u64::from(impoff);
    let mut first = true;
    let mut total: u32 = 0;
    let mut thunks = 0usize;
    let mut nimps = 0usize;
    while left > 20 && nimps < MAX_IMPORTS {
        let d = src
            .array::<20>(desc_off)?
            .ok_or(ImpError::Format("truncated import descriptor"))?;
        let (oft, name, ft) = (le32(&d, 0), le32(&d, 12), le32(&d, 16));
        if name == 0 {
            break;
        }
        left -= 20;
        nimps += 1;
        desc_off += 20;
        let name_off = rawaddr(name, &info.sections, fsize, info.hdr_size)
            .filter(|&o| u64::from(o) <= fsize)
            .ok_or(ImpError::Format("DLL name outside the file"))?;
        let dll = name_at(src, u64::from(name_off))?;
        // ClamAV keeps the part before the first '.', if the first '.'
        // starts ".ocx", ".sys" or ".dll" (any case).
        let dll_stem: &[u8] = match dll.iter().position(|&b| b == b'.') {
            Some(i)
                if dll.len() >= i + 4
                    && [&b".ocx"[..], b".sys", b".dll"]
                        .iter()
                        .any(|e| dll[i..i + 4].eq_ignore_ascii_case(e)) =>
            {
                &dll[..i]
            }
            _ => &dll,
        };
        let mut thu = 0u32;
        let mut ok = false;
        if oft != 0
            && let Some(o) = rawaddr(oft, &info.sections, fsize, info.hdr_size)
        {
            thu = o;
            ok = true;
        }
        if !ok || thu == 0 {
            thu = rawaddr(ft, &info.sections, fsize, info.hdr_size)
                .ok_or(ImpError::Format("thunks outside the file"))?;
        }
        let step: u64 = if info.pe32plus { 8 } else { 4 };
        let mut off = u64::from(thu);
        loop {
            let (ordinal_flag, value, func_rva) = if info.pe32plus {
                let Some(t) = src.array::<8>(off)? else { break };
                let v = u64::from_le_bytes(t);
                (v & (1 << 63) != 0, v, v as u32)
            } else {
                let Some(t) = src.array::<4>(off)? else { break };
                let v = u32::from_le_bytes(t);
                (v & (1 << 31) != 0, u64::from(v), v)
            };
            if value == 0 {
                break;
            }
            thunks += 1;
            if thunks > MAX_THUNKS {
                return Err(ImpError::TooLarge);
            }
            off += step;
            let func: Vec<u8> = if ordinal_flag {
                ordinal_name(&dll, (value & 0xffff) as u16).into_bytes()
            } else {
                // PE32: ClamAV ignores a failed mapping here and reads at
                // offset 0 + 2 (its `if (!ret)` slip); PE32+ skips the entry.
                let o = match rawaddr(func_rva, &info.sections, fsize, info.hdr_size) {
                    Some(o) => u64::from(o),
                    None if !info.pe32plus => 0,
                    None => continue,
                };
                // ClamAV maps `min(256, fsize - o)` bytes from `o + 2`: a
                // name in the file's last bytes does not map and is skipped.
                let want = fsize.saturating_sub(o).min(MAX_NAME as u64);
                if o + 2 + want > fsize {
                    continue;
                }
                name_at(src, o + 2)?
            };
            if !valid_fn_name(&func) {
                return Err(ImpError::Format("invalid function name"));
            }
            let mut piece = Vec::with_capacity(dll_stem.len() + func.len() + 2);
            if !first {
                piece.push(b',');
            }
            piece.extend(dll_stem.iter().map(u8::to_ascii_lowercase));
            piece.push(b'.');
            piece.extend(func.iter().map(u8::to_ascii_lowercase));
            sink(&piece);
            total = total.wrapping_add(piece.len() as u32);
            first = false;
        }
    }
    Ok(total)
}

/// ClamAV's `pe_ordinal`: a name for the well-known ordinals of ws2_32 /
/// wsock32 and oleaut32, `ordN` otherwise.
fn ordinal_name(dll: &[u8], ord: u16) -> String {
    let prefix = |p: &[u8]| dll.len() >= p.len() && dll[..p.len()].eq_ignore_ascii_case(p);
    let table: &[(u16, &str)] = if prefix(b"WS2_32.dll") || prefix(b"wsock32.dll") {
        WS2_32
    } else if prefix(b"oleaut32.dll") {
        OLEAUT32
    } else {
        &[]
    };
    match table.iter().find(|(o, _)| *o == ord) {
        Some((_, n)) => (*n).to_string(),
        None => format!("ord{ord}"),
    }
}

const WS2_32: &[(u16, &str)] = &[
    (1, "accept"),
    (2, "bind"),
    (3, "closesocket"),
    (4, "connect"),
    (5, "getpeername"),
    (6, "getsockname"),
    (7, "getsockopt"),
    (8, "htonl"),
    (9, "htons"),
    (10, "ioctlsocket"),
    (11, "inet_addr"),
    (12, "inet_ntoa"),
    (13, "listen"),
    (14, "ntohl"),
    (15, "ntohs"),
    (16, "recv"),
    (17, "recvfrom"),
    (18, "select"),
    (19, "send"),
    (20, "sendto"),
    (21, "setsockopt"),
    (22, "shutdown"),
    (23, "socket"),
    (24, "GetAddrInfoW"),
    (25, "GetNameInfoW"),
    (26, "WSApSetPostRoutine"),
    (27, "FreeAddrInfoW"),
    (28, "WPUCompleteOverlappedRequest"),
    (29, "WSAAccept"),
    (30, "WSAAddressToStringA"),
    (31, "WSAAddressToStringW"),
    (32, "WSACloseEvent"),
    (33, "WSAConnect"),
    (34, "WSACreateEvent"),
    (35, "WSADuplicateSocketA"),
    (36, "WSADuplicateSocketW"),
    (37, "WSAEnumNameSpaceProvidersA"),
    (38, "WSAEnumNameSpaceProvidersW"),
    (39, "WSAEnumNetworkEvents"),
    (40, "WSAEnumProtocolsA"),
    (41, "WSAEnumProtocolsW"),
    (42, "WSAEventSelect"),
    (43, "WSAGetOverlappedResult"),
    (44, "WSAGetQOSByName"),
    (45, "WSAGetServiceClassInfoA"),
    (46, "WSAGetServiceClassInfoW"),
    (47, "WSAGetServiceClassNameByClassIdA"),
    (48, "WSAGetServiceClassNameByClassIdW"),
    (49, "WSAHtonl"),
    (50, "WSAHtons"),
    (51, "gethostbyaddr"),
    (52, "gethostbyname"),
    (53, "getprotobyname"),
    (54, "getprotobynumber"),
    (55, "getservbyname"),
    (56, "getservbyport"),
    (57, "gethostname"),
    (58, "WSAInstallServiceClassA"),
    (59, "WSAInstallServiceClassW"),
    (60, "WSAIoctl"),
    (61, "WSAJoinLeaf"),
    (62, "WSALookupServiceBeginA"),
    (63, "WSALookupServiceBeginW"),
    (64, "WSALookupServiceEnd"),
    (65, "WSALookupServiceNextA"),
    (66, "WSALookupServiceNextW"),
    (67, "WSANSPIoctl"),
    (68, "WSANtohl"),
    (69, "WSANtohs"),
    (70, "WSAProviderConfigChange"),
    (71, "WSARecv"),
    (72, "WSARecvDisconnect"),
    (73, "WSARecvFrom"),
    (74, "WSARemoveServiceClass"),
    (75, "WSAResetEvent"),
    (76, "WSASend"),
    (77, "WSASendDisconnect"),
    (78, "WSASendTo"),
    (79, "WSASetEvent"),
    (80, "WSASetServiceA"),
    (81, "WSASetServiceW"),
    (82, "WSASocketA"),
    (83, "WSASocketW"),
    (84, "WSAStringToAddressA"),
    (85, "WSAStringToAddressW"),
    (86, "WSAWaitForMultipleEvents"),
    (87, "WSCDeinstallProvider"),
    (88, "WSCEnableNSProvider"),
    (89, "WSCEnumProtocols"),
    (90, "WSCGetProviderPath"),
    (91, "WSCInstallNameSpace"),
    (92, "WSCInstallProvider"),
    (93, "WSCUnInstallNameSpace"),
    (94, "WSCUpdateProvider"),
    (95, "WSCWriteNameSpaceOrder"),
    (96, "WSCWriteProviderOrder"),
    (97, "freeaddrinfo"),
    (98, "getaddrinfo"),
    (99, "getnameinfo"),
    (101, "WSAAsyncSelect"),
    (102, "WSAAsyncGetHostByAddr"),
    (103, "WSAAsyncGetHostByName"),
    (104, "WSAAsyncGetProtoByNumber"),
    (105, "WSAAsyncGetProtoByName"),
    (106, "WSAAsyncGetServByPort"),
    (107, "WSAAsyncGetServByName"),
    (108, "WSACancelAsyncRequest"),
    (109, "WSASetBlockingHook"),
    (110, "WSAUnhookBlockingHook"),
    (111, "WSAGetLastError"),
    (112, "WSASetLastError"),
    (113, "WSACancelBlockingCall"),
    (114, "WSAIsBlocking"),
    (115, "WSAStartup"),
    (116, "WSACleanup"),
    (151, "__WSAFDIsSet"),
    (500, "WEP"),
];
const OLEAUT32: &[(u16, &str)] = &[
    (2, "SysAllocString"),
    (3, "SysReAllocString"),
    (4, "SysAllocStringLen"),
    (5, "SysReAllocStringLen"),
    (6, "SysFreeString"),
    (7, "SysStringLen"),
    (8, "VariantInit"),
    (9, "VariantClear"),
    (10, "VariantCopy"),
    (11, "VariantCopyInd"),
    (12, "VariantChangeType"),
    (13, "VariantTimeToDosDateTime"),
    (14, "DosDateTimeToVariantTime"),
    (15, "SafeArrayCreate"),
    (16, "SafeArrayDestroy"),
    (17, "SafeArrayGetDim"),
    (18, "SafeArrayGetElemsize"),
    (19, "SafeArrayGetUBound"),
    (20, "SafeArrayGetLBound"),
    (21, "SafeArrayLock"),
    (22, "SafeArrayUnlock"),
    (23, "SafeArrayAccessData"),
    (24, "SafeArrayUnaccessData"),
    (25, "SafeArrayGetElement"),
    (26, "SafeArrayPutElement"),
    (27, "SafeArrayCopy"),
    (28, "DispGetParam"),
    (29, "DispGetIDsOfNames"),
    (30, "DispInvoke"),
    (31, "CreateDispTypeInfo"),
    (32, "CreateStdDispatch"),
    (33, "RegisterActiveObject"),
    (34, "RevokeActiveObject"),
    (35, "GetActiveObject"),
    (36, "SafeArrayAllocDescriptor"),
    (37, "SafeArrayAllocData"),
    (38, "SafeArrayDestroyDescriptor"),
    (39, "SafeArrayDestroyData"),
    (40, "SafeArrayRedim"),
    (41, "SafeArrayAllocDescriptorEx"),
    (42, "SafeArrayCreateEx"),
    (43, "SafeArrayCreateVectorEx"),
    (44, "SafeArraySetRecordInfo"),
    (45, "SafeArrayGetRecordInfo"),
    (46, "VarParseNumFromStr"),
    (47, "VarNumFromParseNum"),
    (48, "VarI2FromUI1"),
    (49, "VarI2FromI4"),
    (50, "VarI2FromR4"),
    (51, "VarI2FromR8"),
    (52, "VarI2FromCy"),
    (53, "VarI2FromDate"),
    (54, "VarI2FromStr"),
    (55, "VarI2FromDisp"),
    (56, "VarI2FromBool"),
    (57, "SafeArraySetIID"),
    (58, "VarI4FromUI1"),
    (59, "VarI4FromI2"),
    (60, "VarI4FromR4"),
    (61, "VarI4FromR8"),
    (62, "VarI4FromCy"),
    (63, "VarI4FromDate"),
    (64, "VarI4FromStr"),
    (65, "VarI4FromDisp"),
    (66, "VarI4FromBool"),
    (67, "SafeArrayGetIID"),
    (68, "VarR4FromUI1"),
    (69, "VarR4FromI2"),
    (70, "VarR4FromI4"),
    (71, "VarR4FromR8"),
    (72, "VarR4FromCy"),
    (73, "VarR4FromDate"),
    (74, "VarR4FromStr"),
    (75, "VarR4FromDisp"),
    (76, "VarR4FromBool"),
    (77, "SafeArrayGetVartype"),
    (78, "VarR8FromUI1"),
    (79, "VarR8FromI2"),
    (80, "VarR8FromI4"),
    (81, "VarR8FromR4"),
    (82, "VarR8FromCy"),
    (83, "VarR8FromDate"),
    (84, "VarR8FromStr"),
    (85, "VarR8FromDisp"),
    (86, "VarR8FromBool"),
    (87, "VarFormat"),
    (88, "VarDateFromUI1"),
    (89, "VarDateFromI2"),
    (90, "VarDateFromI4"),
    (91, "VarDateFromR4"),
    (92, "VarDateFromR8"),
    (93, "VarDateFromCy"),
    (94, "VarDateFromStr"),
    (95, "VarDateFromDisp"),
    (96, "VarDateFromBool"),
    (97, "VarFormatDateTime"),
    (98, "VarCyFromUI1"),
    (99, "VarCyFromI2"),
    (100, "VarCyFromI4"),
    (101, "VarCyFromR4"),
    (102, "VarCyFromR8"),
    (103, "VarCyFromDate"),
    (104, "VarCyFromStr"),
    (105, "VarCyFromDisp"),
    (106, "VarCyFromBool"),
    (107, "VarFormatNumber"),
    (108, "VarBstrFromUI1"),
    (109, "VarBstrFromI2"),
    (110, "VarBstrFromI4"),
    (111, "VarBstrFromR4"),
    (112, "VarBstrFromR8"),
    (113, "VarBstrFromCy"),
    (114, "VarBstrFromDate"),
    (115, "VarBstrFromDisp"),
    (116, "VarBstrFromBool"),
    (117, "VarFormatPercent"),
    (118, "VarBoolFromUI1"),
    (119, "VarBoolFromI2"),
    (120, "VarBoolFromI4"),
    (121, "VarBoolFromR4"),
    (122, "VarBoolFromR8"),
    (123, "VarBoolFromDate"),
    (124, "VarBoolFromCy"),
    (125, "VarBoolFromStr"),
    (126, "VarBoolFromDisp"),
    (127, "VarFormatCurrency"),
    (128, "VarWeekdayName"),
    (129, "VarMonthName"),
    (130, "VarUI1FromI2"),
    (131, "VarUI1FromI4"),
    (132, "VarUI1FromR4"),
    (133, "VarUI1FromR8"),
    (134, "VarUI1FromCy"),
    (135, "VarUI1FromDate"),
    (136, "VarUI1FromStr"),
    (137, "VarUI1FromDisp"),
    (138, "VarUI1FromBool"),
    (139, "VarFormatFromTokens"),
    (140, "VarTokenizeFormatString"),
    (141, "VarAdd"),
    (142, "VarAnd"),
    (143, "VarDiv"),
    (144, "DllCanUnloadNow"),
    (145, "DllGetClassObject"),
    (146, "DispCallFunc"),
    (147, "VariantChangeTypeEx"),
    (148, "SafeArrayPtrOfIndex"),
    (149, "SysStringByteLen"),
    (150, "SysAllocStringByteLen"),
    (151, "DllRegisterServer"),
    (152, "VarEqv"),
    (153, "VarIdiv"),
    (154, "VarImp"),
    (155, "VarMod"),
    (156, "VarMul"),
    (157, "VarOr"),
    (158, "VarPow"),
    (159, "VarSub"),
    (160, "CreateTypeLib"),
    (161, "LoadTypeLib"),
    (162, "LoadRegTypeLib"),
    (163, "RegisterTypeLib"),
    (164, "QueryPathOfRegTypeLib"),
    (165, "LHashValOfNameSys"),
    (166, "LHashValOfNameSysA"),
    (167, "VarXor"),
    (168, "VarAbs"),
    (169, "VarFix"),
    (170, "OaBuildVersion"),
    (171, "ClearCustData"),
    (172, "VarInt"),
    (173, "VarNeg"),
    (174, "VarNot"),
    (175, "VarRound"),
    (176, "VarCmp"),
    (177, "VarDecAdd"),
    (178, "VarDecDiv"),
    (179, "VarDecMul"),
    (180, "CreateTypeLib2"),
    (181, "VarDecSub"),
    (182, "VarDecAbs"),
    (183, "LoadTypeLibEx"),
    (184, "SystemTimeToVariantTime"),
    (185, "VariantTimeToSystemTime"),
    (186, "UnRegisterTypeLib"),
    (187, "VarDecFix"),
    (188, "VarDecInt"),
    (189, "VarDecNeg"),
    (190, "VarDecFromUI1"),
    (191, "VarDecFromI2"),
    (192, "VarDecFromI4"),
    (193, "VarDecFromR4"),
    (194, "VarDecFromR8"),
    (195, "VarDecFromDate"),
    (196, "VarDecFromCy"),
    (197, "VarDecFromStr"),
    (198, "VarDecFromDisp"),
    (199, "VarDecFromBool"),
    (200, "GetErrorInfo"),
    (201, "SetErrorInfo"),
    (202, "CreateErrorInfo"),
    (203, "VarDecRound"),
    (204, "VarDecCmp"),
    (205, "VarI2FromI1"),
    (206, "VarI2FromUI2"),
    (207, "VarI2FromUI4"),
    (208, "VarI2FromDec"),
    (209, "VarI4FromI1"),
    (210, "VarI4FromUI2"),
    (211, "VarI4FromUI4"),
    (212, "VarI4FromDec"),
    (213, "VarR4FromI1"),
    (214, "VarR4FromUI2"),
    (215, "VarR4FromUI4"),
    (216, "VarR4FromDec"),
    (217, "VarR8FromI1"),
    (218, "VarR8FromUI2"),
    (219, "VarR8FromUI4"),
    (220, "VarR8FromDec"),
    (221, "VarDateFromI1"),
    (222, "VarDateFromUI2"),
    (223, "VarDateFromUI4"),
    (224, "VarDateFromDec"),
    (225, "VarCyFromI1"),
    (226, "VarCyFromUI2"),
    (227, "VarCyFromUI4"),
    (228, "VarCyFromDec"),
    (229, "VarBstrFromI1"),
    (230, "VarBstrFromUI2"),
    (231, "VarBstrFromUI4"),
    (232, "VarBstrFromDec"),
    (233, "VarBoolFromI1"),
    (234, "VarBoolFromUI2"),
    (235, "VarBoolFromUI4"),
    (236, "VarBoolFromDec"),
    (237, "VarUI1FromI1"),
    (238, "VarUI1FromUI2"),
    (239, "VarUI1FromUI4"),
    (240, "VarUI1FromDec"),
    (241, "VarDecFromI1"),
    (242, "VarDecFromUI2"),
    (243, "VarDecFromUI4"),
    (244, "VarI1FromUI1"),
    (245, "VarI1FromI2"),
    (246, "VarI1FromI4"),
    (247, "VarI1FromR4"),
    (248, "VarI1FromR8"),
    (249, "VarI1FromDate"),
    (250, "VarI1FromCy"),
    (251, "VarI1FromStr"),
    (252, "VarI1FromDisp"),
    (253, "VarI1FromBool"),
    (254, "VarI1FromUI2"),
    (255, "VarI1FromUI4"),
    (256, "VarI1FromDec"),
    (257, "VarUI2FromUI1"),
    (258, "VarUI2FromI2"),
    (259, "VarUI2FromI4"),
    (260, "VarUI2FromR4"),
    (261, "VarUI2FromR8"),
    (262, "VarUI2FromDate"),
    (263, "VarUI2FromCy"),
    (264, "VarUI2FromStr"),
    (265, "VarUI2FromDisp"),
    (266, "VarUI2FromBool"),
    (267, "VarUI2FromI1"),
    (268, "VarUI2FromUI4"),
    (269, "VarUI2FromDec"),
    (270, "VarUI4FromUI1"),
    (271, "VarUI4FromI2"),
    (272, "VarUI4FromI4"),
    (273, "VarUI4FromR4"),
    (274, "VarUI4FromR8"),
    (275, "VarUI4FromDate"),
    (276, "VarUI4FromCy"),
    (277, "VarUI4FromStr"),
    (278, "VarUI4FromDisp"),
    (279, "VarUI4FromBool"),
    (280, "VarUI4FromI1"),
    (281, "VarUI4FromUI2"),
    (282, "VarUI4FromDec"),
    (283, "BSTR_UserSize"),
    (284, "BSTR_UserMarshal"),
    (285, "BSTR_UserUnmarshal"),
    (286, "BSTR_UserFree"),
    (287, "VARIANT_UserSize"),
    (288, "VARIANT_UserMarshal"),
    (289, "VARIANT_UserUnmarshal"),
    (290, "VARIANT_UserFree"),
    (291, "LPSAFEARRAY_UserSize"),
    (292, "LPSAFEARRAY_UserMarshal"),
    (293, "LPSAFEARRAY_UserUnmarshal"),
    (294, "LPSAFEARRAY_UserFree"),
    (295, "LPSAFEARRAY_Size"),
    (296, "LPSAFEARRAY_Marshal"),
    (297, "LPSAFEARRAY_Unmarshal"),
    (298, "VarDecCmpR8"),
    (299, "VarCyAdd"),
    (300, "DllUnregisterServer"),
    (301, "OACreateTypeLib2"),
    (303, "VarCyMul"),
    (304, "VarCyMulI4"),
    (305, "VarCySub"),
    (306, "VarCyAbs"),
    (307, "VarCyFix"),
    (308, "VarCyInt"),
    (309, "VarCyNeg"),
    (310, "VarCyRound"),
    (311, "VarCyCmp"),
    (312, "VarCyCmpR8"),
    (313, "VarBstrCat"),
    (314, "VarBstrCmp"),
    (315, "VarR8Pow"),
    (316, "VarR4CmpR8"),
    (317, "VarR8Round"),
    (318, "VarCat"),
    (319, "VarDateFromUdateEx"),
    (322, "GetRecordInfoFromGuids"),
    (323, "GetRecordInfoFromTypeInfo"),
    (325, "SetVarConversionLocaleSetting"),
    (326, "GetVarConversionLocaleSetting"),
    (327, "SetOaNoCache"),
    (329, "VarCyMulI8"),
    (330, "VarDateFromUdate"),
    (331, "VarUdateFromDate"),
    (332, "GetAltMonthNames"),
    (333, "VarI8FromUI1"),
    (334, "VarI8FromI2"),
    (335, "VarI8FromR4"),
    (336, "VarI8FromR8"),
    (337, "VarI8FromCy"),
    (338, "VarI8FromDate"),
    (339, "VarI8FromStr"),
    (340, "VarI8FromDisp"),
    (341, "VarI8FromBool"),
    (342, "VarI8FromI1"),
    (343, "VarI8FromUI2"),
    (344, "VarI8FromUI4"),
    (345, "VarI8FromDec"),
    (346, "VarI2FromI8"),
    (347, "VarI2FromUI8"),
    (348, "VarI4FromI8"),
    (349, "VarI4FromUI8"),
    (360, "VarR4FromI8"),
    (361, "VarR4FromUI8"),
    (362, "VarR8FromI8"),
    (363, "VarR8FromUI8"),
    (364, "VarDateFromI8"),
    (365, "VarDateFromUI8"),
    (366, "VarCyFromI8"),
    (367, "VarCyFromUI8"),
    (368, "VarBstrFromI8"),
    (369, "VarBstrFromUI8"),
    (370, "VarBoolFromI8"),
    (371, "VarBoolFromUI8"),
    (372, "VarUI1FromI8"),
    (373, "VarUI1FromUI8"),
    (374, "VarDecFromI8"),
    (375, "VarDecFromUI8"),
    (376, "VarI1FromI8"),
    (377, "VarI1FromUI8"),
    (378, "VarUI2FromI8"),
    (379, "VarUI2FromUI8"),
    (401, "OleLoadPictureEx"),
    (402, "OleLoadPictureFileEx"),
    (411, "SafeArrayCreateVector"),
    (412, "SafeArrayCopyData"),
    (413, "VectorFromBstr"),
    (414, "BstrFromVector"),
    (415, "OleIconToCursor"),
    (416, "OleCreatePropertyFrameIndirect"),
    (417, "OleCreatePropertyFrame"),
    (418, "OleLoadPicture"),
    (419, "OleCreatePictureIndirect"),
    (420, "OleCreateFontIndirect"),
    (421, "OleTranslateColor"),
    (422, "OleLoadPictureFile"),
    (423, "OleSavePictureFile"),
    (424, "OleLoadPicturePath"),
    (425, "VarUI4FromI8"),
    (426, "VarUI4FromUI8"),
    (427, "VarI8FromUI8"),
    (428, "VarUI8FromI8"),
    (429, "VarUI8FromUI1"),
    (430, "VarUI8FromI2"),
    (431, "VarUI8FromR4"),
    (432, "VarUI8FromR8"),
    (433, "VarUI8FromCy"),
    (434, "VarUI8FromDate"),
    (435, "VarUI8FromStr"),
    (436, "VarUI8FromDisp"),
    (437, "VarUI8FromBool"),
    (438, "VarUI8FromI1"),
    (439, "VarUI8FromUI2"),
    (440, "VarUI8FromUI4"),
    (441, "VarUI8FromDec"),
    (442, "RegisterTypeLibForUser"),
    (443, "UnRegisterTypeLibForUser"),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exe::{PeMode, pe};
    use md5::{Digest, Md5};
    use moat_core::Blob;

    fn imphash(data: Vec<u8>) -> Result<(String, u32), ImpError> {
        let blob = Blob::from_vec(data);
        let src = Src::new(&blob, &[]);
        let info = pe::parse(&src, PeMode::Scan)?;
        let mut h = Md5::new();
        let n = import_string(&src, &info, |p| h.update(p))?;
        Ok((hex::encode(h.finalize()), n))
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a 544-byte test file
    fn clam_exe_import_hash_matches_sigtool() {
        let p = "/usr/share/clamav-testfiles/clam.exe";
        let Ok(data) = std::fs::read(p) else {
            eprintln!("SKIP: {p} missing (apt clamav-testfiles)");
            return;
        };
        // `sigtool --imp clam.exe` prints 98c88d882f01a3f6ac1e5f7dfd761624:39.
        assert_eq!(
            imphash(data).unwrap(),
            ("98c88d882f01a3f6ac1e5f7dfd761624".to_string(), 39)
        );
    }

    #[test]
    fn mingw_import_hash_matches_sigtool() {
        let Some(pe) = crate::exe::testbin::mingw_pe() else {
            return;
        };
        let path = std::env::temp_dir().join(format!("moat-imp-{}.exe", std::process::id()));
        std::fs::write(&path, &pe).unwrap();
        let out = std::process::Command::new("sigtool")
            .args(["--debug", "--imp"])
            .arg(&path)
            .output();
        let _ = std::fs::remove_file(&path);
        let Ok(out) = out else {
            eprintln!("SKIP: sigtool not available");
            return;
        };
        let text = String::from_utf8_lossy(&out.stderr).into_owned();
        let line = text
            .lines()
            .find_map(|l| l.split("Imphash: ").nth(1))
            .unwrap();
        let (h, n) = line.trim().split_once(':').unwrap();
        assert_eq!(imphash(pe).unwrap(), (h.to_string(), n.parse().unwrap()));
    }

    #[test]
    fn ordinals_are_named_like_clamav() {
        assert_eq!(ordinal_name(b"WS2_32.dll", 1), "accept");
        assert_eq!(ordinal_name(b"wsock32.DLL", 3), "closesocket");
        assert_eq!(ordinal_name(b"OLEAUT32.dll", 2), "SysAllocString");
        assert_eq!(ordinal_name(b"kernel32.dll", 7), "ord7");
        assert_eq!(ordinal_name(b"ws2_32.dll", 60000), "ord60000");
    }

    #[test]
    fn import_strings_of_mutated_headers_never_panic() {
        let Some(pe) = crate::exe::testbin::mingw_pe() else {
            return;
        };
        for f in crate::exe::testbin::mutated_headers(&pe, 3000) {
            let blob = Blob::from_vec(f);
            let src = Src::new(&blob, &[]);
            for mode in [PeMode::Scan, PeMode::Target] {
                if let Ok(info) = pe::parse(&src, mode) {
                    let mut total = 0u64;
                    if let Ok(n) = import_string(&src, &info, |p| total += p.len() as u64) {
                        assert_eq!(u64::from(n), total);
                    }
                }
            }
        }
    }
}
