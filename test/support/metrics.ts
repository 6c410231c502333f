/**
 * A counter or gauge from `/metrics` (Prometheus text), summed over the series whose labels
 * include every one of `labels` (written as `name="value"`); 0 when there is none.
 */
export async function metric(
  baseUrl: string,
  name: string,
  labels: string[] = [],
): Promise<number> {
  const text = await (await fetch(`${baseUrl}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    if (labels.every((label) => line.includes(label))) sum += Number(line.split(' ').at(-1));
  }
  return sum;
}
