/** Standard test strings every scanner recognises, and messages built around them (CRLF line ends). */

/** The EICAR anti-virus test file (68 bytes). */
export const EICAR = 'X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*';

/** The GTUBE anti-spam test string. */
export const GTUBE = 'XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X';

/** The name our private clamd database gives EICAR (clamd appends ".UNOFFICIAL" for unsigned databases). */
export const EICAR_SIGNATURE = 'Sluice.Test.EICAR';

export function testMessage(body: string, subject = 'test', extraHeaders: readonly string[] = []): Buffer {
  const lines = ['From: sender@example.test', 'To: rcpt@example.test', `Subject: ${subject}`, 'Message-ID: <t1@example.test>', ...extraHeaders, '', ...body.split('\n')];
  return Buffer.from(lines.join('\r\n') + '\r\n', 'latin1');
}
