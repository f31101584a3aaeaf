import 'dart:convert';
import 'dart:io';

/// Reads the request body from FUNCTION_INPUT and prints a JSON greeting.
void main() {
  final raw = Platform.environment['FUNCTION_INPUT'] ?? '{}';
  var name = 'World';
  try {
    final input = jsonDecode(raw);
    if (input is Map && input['name'] is String) {
      name = input['name'] as String;
    }
  } on FormatException {
    stderr.writeln('FUNCTION_INPUT is not valid JSON; greeting the world instead');
  }

  print(jsonEncode({
    'message': 'Hello, $name!',
    'timestamp': DateTime.now().toUtc().toIso8601String(),
  }));
}
