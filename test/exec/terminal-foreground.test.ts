import assert from 'node:assert/strict'
import { test } from 'node:test'
import { terminalForeground } from '../../src/cli/exec-command.ts'

// The rule exec uses to decide whether a SIGINT/SIGQUIT came from the terminal (already
// delivered to the command's group) or from someone else (to pass on). /proc/self/stat reads
// "pid (comm) state ppid pgrp session tty_nr tpgid ..."; comm may hold spaces and parentheses.
const stat = (pgrp: number, tpgid: number, comm = 'node') => `4242 (${comm}) S 4100 ${pgrp} 4100 34816 ${tpgid} 4194304 120 0 0 0`

test('on a terminal whose foreground group is exec\'s own, a Ctrl-C has already reached the command', () => {
  assert.equal(terminalForeground(true, stat(4242, 4242)), true)
})

test('exec in a background group of its terminal passes the signal on', () => {
  assert.equal(terminalForeground(true, stat(4242, 4300)), false)
})

test('without a terminal (a supervisor) the signal is always passed on', () => {
  assert.equal(terminalForeground(false, stat(4242, 4242)), false)
})

test('without /proc (macOS) the foreground group cannot be known and the signal is passed on, so a kill -INT from another shell reaches the command', () => {
  assert.equal(terminalForeground(true, undefined), false)
})

test('a command name with spaces and parentheses does not shift the fields', () => {
  assert.equal(terminalForeground(true, stat(4242, 4242, 'my (odd) ) cmd')), true)
  assert.equal(terminalForeground(true, stat(4242, 4300, 'my (odd) ) cmd')), false)
})

test('a stat line too short to hold the fields is not taken for the foreground', () => {
  assert.equal(terminalForeground(true, '4242 (node) S'), false)
})
