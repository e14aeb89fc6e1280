/** The SMTP wire toolkit: pure codecs shared by the intercept and filter doors. */
export { LineReader, type LineEvent } from './line-reader.js';
export { parseCommand, formatCommand, SMTP_VERBS, MAX_PARAMS, MAX_PATH, type SmtpCommand } from './command-parser.js';
export { ReplyParser, parseReply, MAX_REPLY_LINES, type ParsedReply, type ReplyEvent } from './reply-parser.js';
export { formatReply, smtpReply, type SmtpReply } from '../core/smtp-reply.js';
export { editEhloReply, ALWAYS_REMOVED, type EhloCapabilities, type CapabilityEditOptions } from './ehlo-capabilities.js';
export { DataFramer, type FrameOutput, type BareLineEndingPolicy } from './data-framer.js';
export { DotStuffer, DotUnstuffer } from './dot-streams.js';
export { HeaderCollector, parseHeaderBlock, DEFAULT_HEADER_CAP, type HeaderBlock } from './header-collector.js';
export { xtextEncode, xtextDecode, xtextDecodeBytes } from './xtext.js';
export { decodeSaslUser } from './sasl-user.js';
