package connlimit

var MaxFor = maxFor
