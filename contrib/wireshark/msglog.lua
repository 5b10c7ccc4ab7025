-- Wireshark dissector for the msglog protocol (spec/protocol.md in the msglog
-- repository). Lua 5.2, as Wireshark 3.x and 4.0 embed it.
--
-- Load it with `wireshark -X lua_script:msglog.lua` (or tshark), or copy it
-- into the personal Lua plugins folder (Help > About Wireshark > Folders).
--
-- What it does:
-- * TCP port 5555 (a preference), plus a heuristic for other ports that
--   claims a connection only when the first data on it is a client's NAME
--   frame, whole, followed by nothing or by what a client sends next.
-- * Client frames (tag u8 | length u16 LE | payload; CLOSE and unknown tags
--   are one byte) reassembled across TCP segments, several per segment.
-- * Server replies: each byte, 0x00 success or 0xFF failure, with the client
--   frame it answers (replies come in the order of the frames).
-- * The spec's state table per connection (C, N, P, X): each frame shows the
--   state it arrived in, the reply the table calls for and the rule it breaks;
--   bytes after the frame that ends the connection are shown as not processed.
-- * Expert info: warnings for what the spec forbids a client (out-of-order
--   NAME/PASS/MSG, unknown tags, sending after the server's 0xFF, CLOSE sent
--   with a length field) and for replies the spec does not allow; notes for
--   every 0xFF and for bytes the server does not process.
--
-- State is kept per TCP stream and per packet so that re-dissecting a packet
-- (Wireshark does, in any order) shows what the first, in-order pass found.

local msglog = Proto("msglog", "msglog message-log protocol")

local DEFAULT_PORT = 5555
local TAG_NAME, TAG_PASS, TAG_MSG, TAG_CLOSE = 1, 2, 3, 4
local HEADER_LEN = 3 -- tag and u16 length of NAME, PASS and MSG
local REPLY_SUCCESS, REPLY_FAILURE = 0x00, 0xFF
-- Characters of a payload shown in the Info column.
local INFO_TEXT_CHARS = 40

local tag_names = { [TAG_NAME] = "NAME", [TAG_PASS] = "PASS", [TAG_MSG] = "MSG", [TAG_CLOSE] = "CLOSE" }
local reply_names = { [REPLY_SUCCESS] = "success", [REPLY_FAILURE] = "failure" }
-- spec/protocol.md#states: what each state expects.
local expects = { C = TAG_NAME, N = TAG_PASS, P = TAG_MSG }
local state_names = {
    C = "C (connected: expects NAME)",
    N = "N (named: expects PASS)",
    P = "P (authenticated: expects MSG)",
    X = "X (closed)",
}

local function tag_name(tag)
    return tag_names[tag] or string.format("unknown tag 0x%02X", tag)
end

---------------------------------------------------------------- fields

local f = {
    index = ProtoField.uint32("msglog.index", "Frame number", base.DEC, nil, nil,
        "The client frame's number on this connection, from 1; replies count the same way"),
    tag = ProtoField.uint8("msglog.tag", "Tag", base.HEX, tag_names),
    length = ProtoField.uint16("msglog.length", "Length", base.DEC, nil, nil,
        "Payload length in bytes (u16, little-endian)"),
    payload = ProtoField.bytes("msglog.payload", "Payload"),
    text = ProtoField.string("msglog.text", "Payload as text", base.UNICODE,
        "UTF-8; control and invisible characters, backslash and bytes that are not UTF-8 shown as \\xHH"),
    state = ProtoField.string("msglog.state", "State", base.ASCII,
        "The connection's state when the frame arrived (C, N, P or X)"),
    expected_reply = ProtoField.uint8("msglog.expected_reply", "Reply the state table calls for",
        base.HEX, reply_names),
    rule = ProtoField.string("msglog.rule", "Rule broken", base.ASCII,
        "The spec's name of the rule the state table rejects the frame for"),
    reply_in = ProtoField.framenum("msglog.reply_in", "Reply in", base.NONE, frametype.REQUEST),
    ignored = ProtoField.bytes("msglog.ignored", "Not processed by the server"),
    continuation = ProtoField.bytes("msglog.continuation", "Continuation of a frame"),
    uncaptured = ProtoField.uint32("msglog.uncaptured", "Bytes not in the capture", base.DEC),
    reply = ProtoField.uint8("msglog.reply", "Reply", base.HEX, reply_names),
    reply_index = ProtoField.uint32("msglog.reply.index", "Answers frame number", base.DEC),
    reply_tag = ProtoField.uint8("msglog.reply.tag", "Answers tag", base.HEX, tag_names),
    reply_to = ProtoField.framenum("msglog.reply.to", "Answers the frame in", base.NONE, frametype.RESPONSE),
}
msglog.fields = {
    f.index, f.tag, f.length, f.payload, f.text, f.state, f.expected_reply, f.rule, f.reply_in,
    f.ignored, f.continuation, f.uncaptured, f.reply, f.reply_index, f.reply_tag, f.reply_to,
}

local group, severity = expert.group, expert.severity
local ex = {
    out_of_order = ProtoExpert.new("msglog.out_of_order", "Frame out of order (client rule OutOfOrder)",
        group.SEQUENCE, severity.WARN),
    unknown_tag = ProtoExpert.new("msglog.unknown_tag", "Unknown tag (client rule UnknownTag)",
        group.PROTOCOL, severity.WARN),
    sent_after_reject = ProtoExpert.new("msglog.sent_after_reject",
        "Sent after the server's 0xFF (client rule SentAfterReject)", group.SEQUENCE, severity.WARN),
    close_not_one_byte = ProtoExpert.new("msglog.close_not_one_byte",
        "CLOSE sent with a length field (client rule CloseNotOneByte)", group.PROTOCOL, severity.WARN),
    bad_reply = ProtoExpert.new("msglog.bad_reply", "Reply the spec does not allow",
        group.PROTOCOL, severity.WARN),
    rejected = ProtoExpert.new("msglog.rejected",
        "The server rejected a frame (0xFF) and closes the connection", group.RESPONSE_CODE, severity.NOTE),
    not_processed = ProtoExpert.new("msglog.not_processed", "Bytes the server does not process",
        group.SEQUENCE, severity.NOTE),
    truncated = ProtoExpert.new("msglog.truncated", "Frame continues beyond the data available here",
        group.REASSEMBLE, severity.NOTE),
}
msglog.experts = {
    ex.out_of_order, ex.unknown_tag, ex.sent_after_reject, ex.close_not_one_byte,
    ex.bad_reply, ex.rejected, ex.not_processed, ex.truncated,
}

msglog.prefs.port = Pref.uint("TCP port", DEFAULT_PORT,
    "TCP port of msglog servers; 0 for none (the heuristic finds others)")

---------------------------------------------------------------- helpers

local function copy(t)
    local c = {}
    for k, v in pairs(t) do c[k] = v end
    return c
end

-- Length of the well-formed UTF-8 character at s[i] (RFC 3629), or nil.
local function utf8_len(s, i)
    local b = s:byte(i)
    if b < 0x80 then return 1 end
    local n
    if b >= 0xC2 and b <= 0xDF then n = 2
    elseif b >= 0xE0 and b <= 0xEF then n = 3
    elseif b >= 0xF0 and b <= 0xF4 then n = 4
    else return nil end
    if i + n - 1 > #s then return nil end
    local lo, hi = 0x80, 0xBF -- second byte: no overlong forms, surrogates or values over U+10FFFF
    if b == 0xE0 then lo = 0xA0 elseif b == 0xED then hi = 0x9F
    elseif b == 0xF0 then lo = 0x90 elseif b == 0xF4 then hi = 0x8F end
    local b2 = s:byte(i + 1)
    if b2 < lo or b2 > hi then return nil end
    for k = 2, n - 1 do
        local c = s:byte(i + k)
        if c < 0x80 or c > 0xBF then return nil end
    end
    return n
end

local function code_point(s, i, n)
    local b = s:byte(i)
    if n == 1 then return b end
    local cp = b % (2 ^ (7 - n))
    for k = 1, n - 1 do cp = cp * 64 + s:byte(i + k) % 64 end
    return cp
end

-- Characters shown escaped although they are valid UTF-8: controls and the
-- invisible or direction-changing ones (the set spec/protocol.md#record-format
-- escapes in the log), so that what is displayed is what was sent.
local hidden = {
    { 0x00, 0x1F }, { 0x7F, 0x9F }, { 0x61C, 0x61C }, { 0x200B, 0x200F },
    { 0x2028, 0x202E }, { 0x2060, 0x2069 }, { 0xFEFF, 0xFEFF },
}

local function is_hidden(cp)
    for _, r in ipairs(hidden) do
        if cp >= r[1] and cp <= r[2] then return true end
    end
    return false
end

-- A payload as readable text: valid UTF-8 as it is, everything else as \xHH.
-- With max_chars, cut after that many characters and end with "...".
local function readable(s, max_chars)
    local out, i, chars = {}, 1, 0
    while i <= #s do
        if max_chars and chars >= max_chars then
            out[#out + 1] = "..."
            break
        end
        local n = utf8_len(s, i)
        if n and s:byte(i) == 0x5C then
            out[#out + 1] = "\\\\"
        elseif n and not is_hidden(code_point(s, i, n)) then
            out[#out + 1] = s:sub(i, i + n - 1)
        else
            n = n or 1
            for k = i, i + n - 1 do out[#out + 1] = string.format("\\x%02X", s:byte(k)) end
        end
        i = i + n
        chars = chars + 1
    end
    return table.concat(out)
end

---------------------------------------------------------------- state table

-- spec/protocol.md#state-table for a NAME, PASS, MSG, CLOSE or unknown-tag
-- frame in state C, N or P. `first` is the first payload byte (nil when the
-- payload is empty or was not captured). Returns the next state, the reply
-- and the rule broken (nil when accepted).
local function judge(state, tag, len, first)
    if tag == TAG_CLOSE then return "X", REPLY_SUCCESS, nil end
    if tag_names[tag] == nil then return "X", REPLY_FAILURE, "UnknownTag" end
    if tag ~= expects[state] then return "X", REPLY_FAILURE, "OutOfOrder" end
    if tag == TAG_NAME then
        if len == 0 then return "X", REPLY_FAILURE, "EmptyName" end
        if first == 0 then return "X", REPLY_FAILURE, "NameStartsWithNul" end
        return "N", REPLY_SUCCESS, nil
    elseif tag == TAG_PASS then
        if len == 0 then return "X", REPLY_FAILURE, "EmptyPassword" end
        if first and first % 2 == 0 then return "X", REPLY_FAILURE, "PasswordRejected" end
        return "P", REPLY_SUCCESS, nil
    end
    if len == 0 then return "X", REPLY_FAILURE, "EmptyMessage" end
    return "P", REPLY_SUCCESS, nil
end

---------------------------------------------------------------- per-stream state

-- streams[stream_id] = {
--   client = "addr:port" of the client,
--   frames = { [n] = record of the n-th client frame the server processes },
--   reject_packet, reject_index = where the server's first 0xFF was,
--   snapshots = { [packet] = the connection state before that packet },
--   live = the connection state after the last packet of the in-order pass,
-- }
-- A connection state (a flat table, copied per packet):
--   state (C/N/P/X), ended (why it is X), replies (reply bytes seen),
--   server_done (the server sent its closing reply), lost (bytes missing from
--   the capture broke the framing), after_close and after_close_len (bytes
--   after a CLOSE, to spot the original's CLOSE-with-length form), and,
--   when TCP reassembly is off, carry (the start of a frame whose header
--   continues in a later segment) and owed/owed_index (bytes of frame
--   owed_index still to come).
local streams
-- Which dissector calls belong to one dissection of a packet: TCP calls
-- again, with increasing offsets, for data after a reassembled frame.
local current

local function new_state()
    return { state = "C", processed = 0, replies = 0, after_close = 0, owed = 0 }
end

local function endpoint(addr, port)
    return tostring(addr) .. ":" .. tostring(port)
end

-- A connection's key: its two endpoints, in a fixed order. (Not tcp.stream:
-- fields are not available when Wireshark dissects without a tree, as on its
-- first pass.) A capture that reuses both ports for a later connection shows
-- the two as one.
local function stream_id(pinfo)
    local a, b = endpoint(pinfo.src, pinfo.src_port), endpoint(pinfo.dst, pinfo.dst_port)
    if a < b then return a .. " " .. b end
    return b .. " " .. a
end

-- The stream record, created with the sender of this packet as the client
-- unless the server side is known from the port the packet was matched on.
local function get_stream(pinfo, client_is_src)
    local id = stream_id(pinfo)
    local s = streams[id]
    if s then return s end
    if client_is_src == nil then
        local port = pinfo.match_uint
        if pinfo.dst_port == port and pinfo.src_port ~= port then
            client_is_src = true
        elseif pinfo.src_port == port and pinfo.dst_port ~= port then
            client_is_src = false
        else
            -- A msglog server never sends first: the first to send is the client.
            client_is_src = true
        end
    end
    s = {
        client = client_is_src and endpoint(pinfo.src, pinfo.src_port) or endpoint(pinfo.dst, pinfo.dst_port),
        frames = {}, snapshots = {}, live = new_state(),
    }
    streams[id] = s
    return s
end

-- The connection state to work on for this call: the state before the packet
-- on its first call, what the previous call left otherwise.
local function begin_call(s, pinfo, tvb)
    local first = not (current and current.packet == pinfo.number and current.stream == s
        and tvb:offset() > current.offset)
    if first then
        local snapshot = s.snapshots[pinfo.number]
        if snapshot == nil then
            if pinfo.visited then
                -- Not dissected in the in-order pass (should not happen): the
                -- state is unknown, and the bytes are shown without it.
                snapshot = new_state()
                snapshot.unknown = true
            else
                snapshot = copy(s.live)
                s.snapshots[pinfo.number] = snapshot
            end
        end
        current = { packet = pinfo.number, stream = s, work = copy(snapshot), info = false }
    end
    current.offset = tvb:offset()
    return current.work
end

local function end_call(s, pinfo, st)
    if not pinfo.visited and not st.unknown then s.live = copy(st) end
end

---------------------------------------------------------------- client side

-- Registers a frame the server processes and runs the state table on it.
-- Frames are numbered in the connection's order; re-dissection finds the
-- record the in-order pass made (and the reply it learnt of since).
local function process_frame(s, st, pinfo, tag, len, first)
    local index = st.processed + 1
    local next_state, reply, rule = judge(st.state, tag, len, first)
    local rec = s.frames[index]
    if rec == nil then
        rec = { packet = pinfo.number }
        s.frames[index] = rec
    end
    rec.index, rec.tag, rec.length, rec.state = index, tag, len, st.state
    rec.expected, rec.rule = reply, rule
    st.processed = index
    st.state = next_state
    if next_state == "X" then
        if tag == TAG_CLOSE then
            st.ended = string.format("the client sent CLOSE (frame %d) and the server closes", index)
            st.closed_by_close = true
        else
            st.ended = string.format("the server rejects frame %d (%s: %s) and closes",
                index, tag_name(tag), rule)
        end
    end
    return rec
end

local function has_length(tag)
    return tag == TAG_NAME or tag == TAG_PASS or tag == TAG_MSG
end

-- Whether the start of a frame, `bytes`, is enough to run the state table:
-- the header, and for a NAME or PASS with a payload its first byte.
local function decidable(bytes)
    local tag = bytes:byte(1)
    if not has_length(tag) then return true end
    if #bytes < HEADER_LEN then return false end
    local len = bytes:byte(2) + 256 * bytes:byte(3)
    return len == 0 or tag == TAG_MSG or #bytes > HEADER_LEN
end

-- Without TCP reassembly: the bytes at the start of this segment that belong
-- to a frame begun in an earlier one. Returns the item and the bytes used.
local function continue_frame(tvb, pinfo, s, st, late)
    local avail = math.min(tvb:reported_len(), tvb:len())
    if st.carry then
        local have, used = st.carry, 0
        while not decidable(have) and used < avail do
            have = have .. tvb(used, 1):raw()
            used = used + 1
        end
        if not decidable(have) then
            st.carry = have
            return { kind = "continuation", off = 0, len = used, late = late }, used
        end
        st.carry = nil
        local len = have:byte(2) + 256 * have:byte(3)
        local first = #have > HEADER_LEN and have:byte(HEADER_LEN + 1) or nil
        local rec = process_frame(s, st, pinfo, have:byte(1), len, first)
        st.owed, st.owed_index = HEADER_LEN + len - #have, rec.index
        local n = math.min(st.owed, tvb:reported_len() - used)
        st.owed = st.owed - n
        return { kind = "continuation", off = 0, len = used + n, rec = rec, late = late }, used + n
    end
    local n = math.min(st.owed, tvb:reported_len())
    st.owed = st.owed - n
    return { kind = "continuation", off = 0, len = n, index = st.owed_index, late = late }, n
end

-- Frames and other pieces of the client's bytes in this call; items.desegment_*
-- say where TCP must reassemble from when a frame continues in a later segment.
local function analyze_client(tvb, pinfo, s, st)
    local items = {}
    local reported, captured = tvb:reported_len(), tvb:len()
    local off = 0
    local late = s.reject_packet ~= nil and pinfo.number > s.reject_packet
    if late and st.state ~= "X" then
        st.state = "X"
        st.ended = string.format("the server rejected frame %d with 0xFF in packet %d and closed",
            s.reject_index, s.reject_packet)
        st.carry, st.owed = nil, 0
    end
    if st.carry or st.owed > 0 then
        local item, used = continue_frame(tvb, pinfo, s, st, late)
        items[1] = item
        off = used
        if st.carry or st.owed > 0 then return items end
    end

    while off < reported do
        if st.lost then
            items[#items + 1] = { kind = "uncaptured", off = off, len = reported - off, lost = true }
            break
        end
        if st.state == "X" then
            local item = { kind = "ignored", off = off, len = reported - off, reason = st.ended, late = late }
            if st.closed_by_close then
                -- The original server's CLOSE is 04, a u16 length and that many
                -- bytes: spot it when the bytes after the CLOSE are exactly that.
                local before = st.after_close
                for k = off, math.min(reported, captured, off + 2) - 1 do
                    local pos = before + (k - off)
                    if pos == 0 then
                        st.after_close_lo = tvb(k, 1):uint()
                    elseif pos == 1 then
                        st.after_close_len = st.after_close_lo + 256 * tvb(k, 1):uint()
                    end
                end
                st.after_close = before + (reported - off)
                if st.after_close_len and st.after_close == 2 + st.after_close_len then
                    item.close_form = st.after_close_len
                end
            end
            items[#items + 1] = item
            break
        end
        local rest, cap = reported - off, captured - off
        if cap <= 0 or (cap < HEADER_LEN and cap < rest) then
            -- Frame boundaries in bytes that were not captured: what follows
            -- cannot be framed.
            items[#items + 1] = { kind = "uncaptured", off = off, len = rest }
            st.lost = true
            break
        end
        local tag = tvb(off, 1):uint()
        local total, len, first = 1, nil, nil
        if has_length(tag) then
            if rest >= HEADER_LEN then
                len = tvb(off + 1, 2):le_uint()
                total = HEADER_LEN + len
                if len > 0 and cap > HEADER_LEN then first = tvb(off + HEADER_LEN, 1):uint() end
            else
                total = nil -- the header continues in a later segment
            end
        end
        if total == nil or rest < total then
            if pinfo.can_desegment > 0 then
                items.desegment_offset = off
                items.desegment_len = total and (total - rest) or DESEGMENT_ONE_MORE_SEGMENT
                break
            end
            -- No reassembly (turned off, or data missing): show what is here,
            -- and keep the start of a frame too short to judge for the next
            -- segment. (From HEADER_LEN + 1 bytes on, any frame can be judged.)
            if rest <= HEADER_LEN and not decidable(tvb(off, rest):raw()) then
                st.carry = tvb(off, rest):raw()
                items[#items + 1] = { kind = "frame", off = off, tag = tag, len = len, total = total,
                    avail = rest, late = late }
                break
            end
        end
        local rec = process_frame(s, st, pinfo, tag, len or 0, first)
        local avail = math.min(total, rest)
        items[#items + 1] = { kind = "frame", off = off, tag = tag, len = len, total = total,
            avail = avail, rec = rec, late = late }
        if avail < total then
            st.owed, st.owed_index = total - avail, rec.index
            break
        end
        off = off + total
    end
    return items
end

---------------------------------------------------------------- server side

local function analyze_server(tvb, pinfo, s, st)
    local items = {}
    for off = 0, tvb:len() - 1 do
        local byte = tvb(off, 1):uint()
        st.replies = st.replies + 1
        local index = st.replies
        local rec = s.frames[index]
        if rec and rec.packet > pinfo.number then rec = nil end
        local item = { kind = "reply", off = off, byte = byte, index = index, rec = rec }
        if st.server_done then
            item.after_end = true
        elseif rec == nil and st.state == "X" then
            -- Every frame the state table processes was answered already.
            item.unasked = true
        end
        if byte == REPLY_FAILURE then
            if not st.server_done then
                st.server_done = true
                if s.reject_packet == nil then s.reject_packet, s.reject_index = pinfo.number, index end
            end
        elseif byte == REPLY_SUCCESS then
            if rec and rec.tag == TAG_CLOSE then st.server_done = true end
        else
            item.bad = true
        end
        if rec and not pinfo.visited then rec.reply_packet = pinfo.number end
        items[#items + 1] = item
    end
    return items
end

---------------------------------------------------------------- display

local function frame_label(rec)
    return string.format("%s #%d", tag_name(rec.tag), rec.index)
end

local function add_frame_facts(tree, tvb, range, rec)
    tree:add(f.index, range, rec.index):set_generated()
    local state = tree:add(f.state, range, rec.state)
    state:set_generated()
    state:append_text(state_names[rec.state]:sub(2))
    tree:add(f.expected_reply, range, rec.expected):set_generated()
    if rec.rule then tree:add(f.rule, range, rec.rule):set_generated() end
    if rec.reply_packet then tree:add(f.reply_in, range, rec.reply_packet):set_generated() end
    if rec.rule == "OutOfOrder" then
        tree:add_proto_expert_info(ex.out_of_order, string.format(
            "%s sent in state %s, where the client must send %s (spec: client requirements, OutOfOrder)",
            tag_name(rec.tag), rec.state, tag_names[expects[rec.state]]))
    elseif rec.rule == "UnknownTag" then
        tree:add_proto_expert_info(ex.unknown_tag, string.format(
            "Tag 0x%02X is not a msglog tag (1 NAME, 2 PASS, 3 MSG, 4 CLOSE); "
                .. "the server rejects it and closes (spec: unknown tags)",
            rec.tag))
    end
end

local function warn_late(tree, item)
    if item.late then
        tree:add_proto_expert_info(ex.sent_after_reject,
            "Sent after the server's 0xFF: a client must not send anything more on the connection "
                .. "(spec: client requirements, SentAfterReject)")
    end
end

-- The tree item of one piece of the client's bytes, `len` of them from `off`
-- (as many of them as were captured; none when none was).
local function add_piece(tvb, tree, off, len)
    local n = math.min(len, tvb:len() - off)
    if n <= 0 then return tree:add(msglog) end
    return tree:add(msglog, tvb(off, n))
end

-- Adds one client item to the tree; returns its text for the Info column.
local function render_client_item(tvb, tree, item)
    if item.kind == "frame" then
        local rec = item.rec
        local t = add_piece(tvb, tree, item.off, item.avail)
        local range = tvb(item.off, math.min(item.avail, tvb:len() - item.off))
        local avail = range:len()
        t:add(f.tag, tvb(item.off, 1))
        t:append_text(", " .. (rec and frame_label(rec) or tag_name(item.tag)))
        local info = tag_name(item.tag)
        if item.len and avail >= HEADER_LEN then
            t:add_le(f.length, tvb(item.off + 1, 2))
            t:append_text(string.format(", %d bytes", item.len))
            local payload_avail = avail - HEADER_LEN
            if payload_avail > 0 then
                local p = tvb(item.off + HEADER_LEN, payload_avail)
                t:add(f.payload, p)
                t:add(f.text, p, readable(p:raw()))
                if item.tag ~= TAG_PASS then
                    info = info .. ' "' .. readable(p:raw(), INFO_TEXT_CHARS) .. '"'
                end
            end
        end
        if item.total == nil or avail < item.total then
            t:add_proto_expert_info(ex.truncated, item.total
                and string.format("%d of the frame's %d bytes are here: "
                    .. "the rest was not captured, or TCP reassembly is off",
                    avail, item.total)
                or string.format("%d of the frame's 3 header bytes are here: "
                    .. "TCP reassembly is off or data is missing",
                    avail))
            info = info .. " [incomplete]"
        end
        if rec then
            add_frame_facts(t, tvb, range, rec)
            if rec.rule then
                t:append_text(string.format(" [%s]", rec.rule))
                info = info .. string.format(" [%s]", rec.rule)
            end
        end
        warn_late(t, item)
        return info
    elseif item.kind == "continuation" then
        local t = add_piece(tvb, tree, item.off, item.len)
        if item.len > 0 then t:add(f.continuation, tvb(item.off, item.len)) end
        local info = "[continuation]"
        if item.rec then
            local range = tvb(item.off, math.max(math.min(item.len, tvb:len() - item.off), 0))
            t:append_text(", rest of " .. frame_label(item.rec))
            t:add(f.tag, range, item.rec.tag):set_generated()
            t:add(f.length, range, item.rec.length):set_generated()
            add_frame_facts(t, tvb, range, item.rec)
            info = tag_name(item.rec.tag) .. " [continued]"
        else
            t:append_text(item.index and string.format(", rest of frame #%d", item.index)
                or ", rest of a frame's header")
        end
        warn_late(t, item)
        return info
    elseif item.kind == "ignored" then
        local t = add_piece(tvb, tree, item.off, item.len)
        t:append_text(string.format(", %d bytes not processed", item.len))
        local avail = math.min(item.len, tvb:len() - item.off)
        if avail > 0 then t:add(f.ignored, tvb(item.off, avail)) end
        t:add_proto_expert_info(ex.not_processed, string.format(
            "%d bytes the server does not process: %s (spec: states, row X1)",
            item.len, item.reason or "the connection is closed"))
        if item.close_form then
            t:add_proto_expert_info(ex.close_not_one_byte, string.format(
                "CLOSE followed by a length field and %d bytes, the original server's form; "
                    .. "CLOSE is the single byte 0x04 (spec: client requirements, CloseNotOneByte)",
                item.close_form))
        end
        warn_late(t, item)
        return string.format("[%d bytes not processed]", item.len)
    end
    -- uncaptured
    local t = add_piece(tvb, tree, item.off, item.len)
    t:append_text(string.format(", %d bytes not decoded", item.len))
    t:add(f.uncaptured, item.len):set_generated()
    t:add_proto_expert_info(ex.truncated, item.lost
        and "Not decoded: earlier bytes of this stream are missing from the capture, "
            .. "so its frames cannot be told apart"
        or string.format("%d bytes on the wire are not in the capture, "
            .. "so the frames in them and after them cannot be told apart",
            item.len))
    return "[not captured]"
end

local function render_reply(tvb, tree, item)
    local range = tvb(item.off, 1)
    local t = tree:add(msglog, range)
    t:add(f.reply, range)
    local rec = item.rec
    local answers
    if rec then
        answers = frame_label(rec)
        t:add(f.reply_index, range, item.index):set_generated()
        t:add(f.reply_tag, range, rec.tag):set_generated()
        t:add(f.reply_to, range, rec.packet):set_generated()
        if rec.rule then t:add(f.rule, range, rec.rule):set_generated() end
    elseif item.index then
        answers = string.format("frame #%d", item.index)
        t:add(f.reply_index, range, item.index):set_generated()
    else
        answers = "a frame (this packet was not dissected in order)"
    end
    local meaning = reply_names[item.byte] or "not a reply"
    t:append_text(string.format(", reply 0x%02X %s to %s", item.byte, meaning, answers))
    local info = string.format("Reply 0x%02X %s (%s", item.byte, meaning, answers)
    if item.bad then
        t:add_proto_expert_info(ex.bad_reply, string.format(
            "0x%02X is not a reply: the server answers 0x00 (success) or 0xFF (failure) (spec: replies)",
            item.byte))
    elseif item.after_end then
        t:add_proto_expert_info(ex.bad_reply,
            "The server sent this after its closing reply (a 0xFF or the confirmation of a CLOSE) "
                .. "(spec: replies)")
    elseif item.unasked then
        t:add_proto_expert_info(ex.bad_reply,
            "Reply to no frame: the state table closed the connection before this frame, "
                .. "so the server must not process it (spec: states)")
    end
    if item.byte == REPLY_FAILURE then
        local why
        if rec and rec.rule then
            why = string.format("the server rejected %s (%s) and closes the connection", answers, rec.rule)
            info = info .. ": " .. rec.rule
        elseif rec then
            why = string.format("to %s, which the state table accepts: a limit, a failed append, "
                .. "a timeout or a shutdown, not visible on the wire; the server closes", answers)
        elseif item.unasked or item.after_end then
            why = "to no frame the server may process"
        elseif item.index == nil then
            why = "the frame it answers is unknown here"
        elseif item.index == 1 then
            why = "before any complete frame: the server is full, "
                .. "or a limit or timeout hit frame #1; it closes"
        else
            why = string.format("to %s, before it was complete in the capture: "
                .. "a length over the server's limit, or a timeout; it closes", answers)
        end
        t:add_proto_expert_info(ex.rejected, "Failure (0xFF): " .. why)
    elseif item.byte == REPLY_SUCCESS and rec and rec.expected == REPLY_FAILURE then
        t:add_proto_expert_info(ex.bad_reply, string.format(
            "0x00 to %s, which the state table rejects (%s): the spec requires 0xFF", answers, rec.rule))
    end
    return info .. ")"
end

local function set_info(pinfo, text)
    if not current.info then
        pinfo.cols.protocol = "msglog"
        pinfo.cols.info:set(text)
        current.info = true
    else
        pinfo.cols.info:append(", " .. text)
    end
end

---------------------------------------------------------------- dissectors

local function dissect(tvb, pinfo, tree)
    local s = get_stream(pinfo)
    local st = begin_call(s, pinfo, tvb)
    local from_client = endpoint(pinfo.src, pinfo.src_port) == s.client
    local items
    if st.unknown then
        -- Frame boundaries without the connection's state: work on a scratch
        -- record, and show no state, numbers or links.
        local scratch = { client = s.client, frames = {} }
        local analyze = from_client and analyze_client or analyze_server
        items = analyze(tvb, pinfo, scratch, st)
        for _, item in ipairs(items) do item.rec, item.index, item.unasked = nil, nil, nil end
    else
        items = (from_client and analyze_client or analyze_server)(tvb, pinfo, s, st)
    end
    end_call(s, pinfo, st)

    local texts = {}
    for _, item in ipairs(items) do
        if item.kind == "reply" then
            texts[#texts + 1] = render_reply(tvb, tree, item)
        else
            texts[#texts + 1] = render_client_item(tvb, tree, item)
        end
    end
    if #texts > 0 then set_info(pinfo, table.concat(texts, ", ")) end
    if items.desegment_offset then
        pinfo.desegment_offset = items.desegment_offset
        pinfo.desegment_len = items.desegment_len
    end
    return tvb:len()
end
msglog.dissector = dissect

-- Whether `tvb`, the first data of a TCP connection, is what a msglog client
-- sends first: a whole NAME frame whose name is not empty and does not start
-- with NUL, then NAME, PASS or MSG frames that end exactly where the segment
-- does (the last may continue in the next segment), or a CLOSE (after which
-- anything goes: the server reads no further). An unknown tag is not
-- accepted: in a first segment it is more likely another protocol.
local function looks_like_client_start(tvb)
    local n = tvb:len()
    if n < HEADER_LEN + 1 or tvb:reported_len() ~= n then return false end
    if tvb(0, 1):uint() ~= TAG_NAME then return false end
    local len = tvb(1, 2):le_uint()
    if len == 0 or n < HEADER_LEN + len or tvb(3, 1):uint() == 0 then return false end
    local off = HEADER_LEN + len
    while off < n do
        local tag = tvb(off, 1):uint()
        if tag == TAG_CLOSE then return true end
        if not has_length(tag) then return false end
        if n - off < HEADER_LEN then return true end
        off = off + HEADER_LEN + tvb(off + 1, 2):le_uint()
    end
    return true
end

-- heuristic[stream_id] = whether the stream is msglog, decided on the first
-- data the heuristic sees on it (the first data of the connection when the
-- capture has its start).
local heuristic

local function heuristic_dissector(tvb, pinfo, tree)
    local id = stream_id(pinfo)
    local verdict = heuristic[id]
    if verdict == nil then
        if pinfo.visited then return false end
        verdict = looks_like_client_start(tvb)
        heuristic[id] = verdict
        if verdict then
            streams[id] = nil
            get_stream(pinfo, true)
        end
    end
    if not verdict then return false end
    pinfo.conversation = msglog
    -- The Lua function itself: msglog.dissector would go through Wireshark's
    -- call_dissector, which takes away TCP's offer to reassemble.
    dissect(tvb, pinfo, tree)
    return true
end

function msglog.init()
    streams, heuristic, current = {}, {}, nil
end

local registered_port
local function register_port()
    local tcp_port = DissectorTable.get("tcp.port")
    if registered_port and registered_port ~= 0 then tcp_port:remove(registered_port, msglog) end
    registered_port = msglog.prefs.port
    if registered_port ~= 0 then tcp_port:add(registered_port, msglog) end
end
-- Offered in Decode As for any port.
DissectorTable.get("tcp.port"):add_for_decode_as(msglog)

function msglog.prefs_changed()
    if msglog.prefs.port ~= registered_port then register_port() end
end

register_port()
msglog:register_heuristic("tcp", heuristic_dissector)
