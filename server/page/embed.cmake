# embed.cmake — turns the chat page into a C array at build time (cmake -DIN=chat.html -DOUT=chat_page.c -P …), so
# `tandem serve` is one binary with nothing to find on disk and the page stays an ordinary file to edit.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" n_hex)
math(EXPR n_bytes "${n_hex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 16 line_pattern)  # CMake regexes have no {n}
string(REGEX REPLACE "(${line_pattern})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUT}.tmp"
  "/* Generated from server/page/chat.html by server/page/embed.cmake; do not edit. */\n"
  "#include <stddef.h>\n"
  "const unsigned char serve_chat_page[] = {\n${bytes}0x00};\n"
  "const size_t serve_chat_page_len = ${n_bytes};\n")
file(RENAME "${OUT}.tmp" "${OUT}")
