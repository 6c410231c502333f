export type NestedArray<V> = (V | NestedArray<V>)[];

/**
 * Parses Postgres's text output of an array (`{1,2}`, `{{a,"b c"},{NULL,"\"q\""}}`) into nested
 * arrays, handing every element to `parseElement`: quoted elements with their escapes removed,
 * unquoted `NULL` as null (a quoted `"NULL"` is the string). A lower-bound decoration
 * (`[0:1]={…}`) is skipped. Postgres never puts spaces between elements, so none are trimmed.
 * Malformed text never throws: whatever was read up to the fault is returned.
 */
export function parsePgArray<V>(
  text: string,
  parseElement: (token: string | null) => V,
): NestedArray<V> {
  let pos = text.indexOf('{');
  if (pos < 0) return [];

  const readQuoted = (): string => {
    let value = '';
    pos++; // the opening quote
    while (pos < text.length && text[pos] !== '"') {
      if (text[pos] === '\\') pos++;
      value += text[pos] ?? '';
      pos++;
    }
    pos++; // the closing quote
    return value;
  };

  const readUnquoted = (): string => {
    const start = pos;
    while (pos < text.length && text[pos] !== ',' && text[pos] !== '}') pos++;
    return text.slice(start, pos);
  };

  const readArray = (): NestedArray<V> => {
    pos++; // the opening brace
    const items: NestedArray<V> = [];
    if (text[pos] === '}') {
      pos++;
      return items;
    }
    while (pos < text.length) {
      const char = text[pos];
      if (char === '{') items.push(readArray());
      else if (char === '"') items.push(parseElement(readQuoted()));
      else {
        const token = readUnquoted();
        items.push(parseElement(token === 'NULL' ? null : token));
      }
      const separator = text[pos++];
      if (separator !== ',') break; // '}' ends this level; anything else is malformed
    }
    return items;
  };

  return readArray();
}
