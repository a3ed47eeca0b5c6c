
-- Release one lock (the function above).
-- KEYS[1] lock key, KEYS[2] queue, KEYS[3] waiting
-- ARGV[1] owner token, ARGV[2] release channel, ARGV[3] '1' to publish frees
return release(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
