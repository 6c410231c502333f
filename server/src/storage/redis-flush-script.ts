/**
 * The flush of a Redis shape log, as one Lua script: atomic (the chunks, the sealed index and the
 * open chunk's number change together or not at all) and idempotent. It is fenced: the log hash's
 * `epoch` is the writer epoch of the last server that claimed the storage (`claimWriter`) or
 * flushed the log, and a flush from an earlier epoch (a writer that lost the replication lock and
 * does not know it yet) is refused with `SLUICE_FENCED`, changing nothing. Each chunk states how many
 * entries it held before this flush; a retry after a lost reply finds some or all of its entries
 * already there, checks that the last of them is the one it expects, and adds only the rest. A
 * log in any other state (written by someone else, cut, deleted) is refused with an error
 * starting `SLUICE_LOG_MISMATCH`, and the log that sent it must be reopened.
 *
 * KEYS: the log hash, the sealed-chunk list, then one chunk list per chunk written.
 * ARGV: the sender's writer epoch, the number of chunks, then per chunk: its number, entries
 * before, entries sent, its descriptor when this flush seals it (else ''), and the entries.
 */
export const FLUSH_SCRIPT = `
local open = tonumber(redis.call('HGET', KEYS[1], 'open'))
if not open then return redis.error_reply('SLUICE_LOG_MISMATCH the log does not exist') end
local epoch = tonumber(ARGV[1])
local fence = tonumber(redis.call('HGET', KEYS[1], 'epoch') or '0')
if epoch < fence then
  return redis.error_reply('SLUICE_FENCED writer epoch ' .. epoch .. ' is behind ' .. fence ..
    ': another server writes this storage now')
end
if epoch > fence then redis.call('HSET', KEYS[1], 'epoch', epoch) end
local at = 3
for i = 1, tonumber(ARGV[2]) do
  local key = KEYS[2 + i]
  local number = tonumber(ARGV[at])
  local before = tonumber(ARGV[at + 1])
  local count = tonumber(ARGV[at + 2])
  local descriptor = ARGV[at + 3]
  local first = at + 4
  at = first + count
  local length = redis.call('LLEN', key)
  local done = length - before
  local problem = 'SLUICE_LOG_MISMATCH chunk ' .. number .. ' holds ' .. length ..
    ' entries, this flush expected ' .. before .. ' to ' .. (before + count)
  if number < open then
    -- Sealed by an earlier try of this flush whose reply was lost.
    if descriptor == '' or done ~= count then return redis.error_reply(problem) end
  elseif number == open then
    if done < 0 or done > count then return redis.error_reply(problem) end
    if done > 0 and redis.call('LINDEX', key, -1) ~= ARGV[first + done - 1] then
      return redis.error_reply(problem .. ', and its last entry differs')
    end
    -- unpack() takes a bounded number of values: push in slices.
    local from = first + done
    while from < first + count do
      local to = math.min(from + 999, first + count - 1)
      redis.call('RPUSH', key, unpack(ARGV, from, to))
      from = to + 1
    end
    if descriptor ~= '' then
      redis.call('RPUSH', KEYS[2], descriptor)
      open = number + 1
      redis.call('HSET', KEYS[1], 'open', open)
    end
  else
    return redis.error_reply('SLUICE_LOG_MISMATCH chunk ' .. number .. ' is after the open chunk ' .. open)
  end
end
return 'OK'
`;
