/**
 * Milter protocol version 6 constants (Sendmail libmilter mfdef.h / mfapi.h; Postfix src/milter/milter8.c).
 * Names in comments are the spec names. See /work/shared/reference/protocols.md §1.
 */

/** Highest protocol version we speak (SMFI_PROT_VERSION). */
export const MILTER_VERSION = 6;
/** Lowest MTA version libmilter accepts (SMFI_PROT_VERSION_MIN). */
export const MILTER_MIN_VERSION = 2;

/** Commands MTA → filter. */
export const Cmd = {
  ABORT: 0x41, // 'A' SMFIC_ABORT
  BODY: 0x42, // 'B' SMFIC_BODY
  CONNECT: 0x43, // 'C' SMFIC_CONNECT
  MACRO: 0x44, // 'D' SMFIC_MACRO
  BODYEOB: 0x45, // 'E' SMFIC_BODYEOB
  HELO: 0x48, // 'H' SMFIC_HELO
  QUIT_NC: 0x4b, // 'K' SMFIC_QUIT_NC
  HEADER: 0x4c, // 'L' SMFIC_HEADER
  MAIL: 0x4d, // 'M' SMFIC_MAIL
  EOH: 0x4e, // 'N' SMFIC_EOH
  OPTNEG: 0x4f, // 'O' SMFIC_OPTNEG
  QUIT: 0x51, // 'Q' SMFIC_QUIT
  RCPT: 0x52, // 'R' SMFIC_RCPT
  DATA: 0x54, // 'T' SMFIC_DATA
  UNKNOWN: 0x55, // 'U' SMFIC_UNKNOWN
} as const;

/** Replies and actions filter → MTA. */
export const Reply = {
  ADDRCPT: 0x2b, // '+' SMFIR_ADDRCPT
  DELRCPT: 0x2d, // '-' SMFIR_DELRCPT
  ADDRCPT_PAR: 0x32, // '2' SMFIR_ADDRCPT_PAR
  SHUTDOWN: 0x34, // '4' SMFIR_SHUTDOWN
  ACCEPT: 0x61, // 'a' SMFIR_ACCEPT
  REPLBODY: 0x62, // 'b' SMFIR_REPLBODY
  CONTINUE: 0x63, // 'c' SMFIR_CONTINUE
  DISCARD: 0x64, // 'd' SMFIR_DISCARD
  CHGFROM: 0x65, // 'e' SMFIR_CHGFROM
  CONN_FAIL: 0x66, // 'f' SMFIR_CONN_FAIL
  ADDHEADER: 0x68, // 'h' SMFIR_ADDHEADER
  INSHEADER: 0x69, // 'i' SMFIR_INSHEADER
  SETSYMLIST: 0x6c, // 'l' SMFIR_SETSYMLIST
  CHGHEADER: 0x6d, // 'm' SMFIR_CHGHEADER
  PROGRESS: 0x70, // 'p' SMFIR_PROGRESS
  QUARANTINE: 0x71, // 'q' SMFIR_QUARANTINE
  REJECT: 0x72, // 'r' SMFIR_REJECT
  SKIP: 0x73, // 's' SMFIR_SKIP
  TEMPFAIL: 0x74, // 't' SMFIR_TEMPFAIL
  REPLYCODE: 0x79, // 'y' SMFIR_REPLYCODE
  OPTNEG: 0x4f, // 'O' SMFIC_OPTNEG (the negotiation answer reuses the command byte)
} as const;

/** Action bits: what the filter may do (SMFIF_*). */
export const Action = {
  ADDHDRS: 0x001, // SMFIF_ADDHDRS: 'h' and 'i'
  CHGBODY: 0x002, // SMFIF_CHGBODY (SMFIF_MODBODY): 'b'
  ADDRCPT: 0x004, // SMFIF_ADDRCPT: '+'
  DELRCPT: 0x008, // SMFIF_DELRCPT: '-'
  CHGHDRS: 0x010, // SMFIF_CHGHDRS: 'm'
  QUARANTINE: 0x020, // SMFIF_QUARANTINE: 'q'
  CHGFROM: 0x040, // SMFIF_CHGFROM: 'e'
  ADDRCPT_PAR: 0x080, // SMFIF_ADDRCPT_PAR: '2'
  SETSYMLIST: 0x100, // SMFIF_SETSYMLIST: macro lists in the OPTNEG reply
} as const;
/** SMFI_CURR_ACTS: every action bit of version 6. */
export const ALL_ACTIONS = 0x1ff;

/** Protocol bits (SMFIP_*): steps the MTA leaves out, extras it understands, steps the filter won't answer. */
export const Proto = {
  NOCONNECT: 0x00000001, // SMFIP_NOCONNECT
  NOHELO: 0x00000002, // SMFIP_NOHELO
  NOMAIL: 0x00000004, // SMFIP_NOMAIL
  NORCPT: 0x00000008, // SMFIP_NORCPT
  NOBODY: 0x00000010, // SMFIP_NOBODY
  NOHDRS: 0x00000020, // SMFIP_NOHDRS
  NOEOH: 0x00000040, // SMFIP_NOEOH
  NR_HDR: 0x00000080, // SMFIP_NR_HDR (SMFIP_NOHREPL)
  NOUNKNOWN: 0x00000100, // SMFIP_NOUNKNOWN
  NODATA: 0x00000200, // SMFIP_NODATA
  SKIP: 0x00000400, // SMFIP_SKIP: MTA understands SMFIR_SKIP
  RCPT_REJ: 0x00000800, // SMFIP_RCPT_REJ
  NR_CONN: 0x00001000, // SMFIP_NR_CONN
  NR_HELO: 0x00002000, // SMFIP_NR_HELO
  NR_MAIL: 0x00004000, // SMFIP_NR_MAIL
  NR_RCPT: 0x00008000, // SMFIP_NR_RCPT
  NR_DATA: 0x00010000, // SMFIP_NR_DATA
  NR_UNKN: 0x00020000, // SMFIP_NR_UNKN
  NR_EOH: 0x00040000, // SMFIP_NR_EOH
  NR_BODY: 0x00080000, // SMFIP_NR_BODY
  HDR_LEADSPC: 0x00100000, // SMFIP_HDR_LEADSPC
  MDS_256K: 0x10000000, // SMFIP_MDS_256K
  MDS_1M: 0x20000000, // SMFIP_MDS_1M
} as const;
/** SMFI_CURR_PROT: every protocol bit defined in version 6. */
export const ALL_PROTOCOL = 0x001fffff;

/** Macro stage indexes used in the OPTNEG macro-list request (SMFIM_*). Note EOM=5, EOH=6 on the wire. */
export const MacroStage = {
  CONNECT: 0, // SMFIM_CONNECT
  HELO: 1, // SMFIM_HELO
  ENVFROM: 2, // SMFIM_ENVFROM
  ENVRCPT: 3, // SMFIM_ENVRCPT
  DATA: 4, // SMFIM_DATA
  EOM: 5, // SMFIM_EOM
  EOH: 6, // SMFIM_EOH
} as const;

/** CONNECT address families (SMFIA_*). */
export const Family = {
  UNKNOWN: 0x55, // 'U' SMFIA_UNKNOWN
  UNIX: 0x4c, // 'L' SMFIA_UNIX
  INET: 0x34, // '4' SMFIA_INET
  INET6: 0x36, // '6' SMFIA_INET6
} as const;

/** Largest body chunk an MTA sends by default (MILTER_CHUNK_SIZE / MILTER_MAX_DATA_SIZE). */
export const MILTER_CHUNK_SIZE = 65535;
/** Default cap on one packet's length field: 1 MiB plus one body chunk. */
export const DEFAULT_MAX_PACKET = 1024 * 1024 + MILTER_CHUNK_SIZE;
/** SMFIR_REPLYCODE limits from libmilter smfi_setmlreply: lines and characters per line. */
export const MAX_REPLY_LINES = 32;
export const MAX_REPLY_LINE_TEXT = 980;
